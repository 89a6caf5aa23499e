"""A lineage mark: one completed turn's place in its session's conversation.

The lineage index keeps one for every turn of every session it knows, hibernated ones
included, for as long as the session is kept: so a mark holds its two ids of its own
(the lineage hash and the CLI's transcript uuid) as bytes, not text. A 64-digit hex
hash is 113 bytes as a ``str`` and 65 as its 32-byte digest; a uuid 85 and 49: ~80
bytes less a turn, ~0.8 KiB a hibernated session of ten turns
(docs/reference/benchmarks.md). Both read back as the text they were given.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from actors import ForkPoint


@dataclass(frozen=True, slots=True, repr=False)
class Mark:
    """One completed turn: where it leaves its session's conversation.

    Made from the text of its ids with ``Mark.of``.

    Attributes:
        session_id: the session that ran it.
        turn: the turns of the conversation, as its client sees it, through this one.
        key: the lineage hash through this turn, as the index keys it (``hash_key``);
            ``hash`` gives its text (``app.sessions._lineage``: 64 hex digits).
        packed_uuid: the CLI transcript uuid of the turn's last assistant message
            (``_packed_uuid``); ``assistant_uuid`` gives its text.
        claude_session_id: the Claude session whose transcript holds it.
    """

    session_id: str
    turn: int
    key: bytes | str
    packed_uuid: bytes | str | None
    claude_session_id: str | None

    @classmethod
    def of(
        cls,
        session_id: str,
        turn: int,
        hash_: str,
        assistant_uuid: str | None,
        claude_session_id: str | None,
    ) -> Mark:
        """The mark of a turn, from the text of its lineage hash and transcript uuid.
        Not a checkpoint."""
        return cls(
            session_id, turn, hash_key(hash_), _packed_uuid(assistant_uuid), claude_session_id
        )

    @property
    def hash(self) -> str:
        key = self.key
        return key.hex() if isinstance(key, bytes) else key

    @property
    def assistant_uuid(self) -> str | None:
        packed = self.packed_uuid
        return str(uuid.UUID(bytes=packed)) if isinstance(packed, bytes) else packed

    @property
    def fork_point(self) -> ForkPoint | None:
        """Where a fork after this turn resumes, if the CLI said."""
        if self.packed_uuid and self.claude_session_id:
            return ForkPoint(self.claude_session_id, self.assistant_uuid)
        return None

    def __repr__(self) -> str:
        return (
            f"Mark(session_id={self.session_id!r}, turn={self.turn!r}, hash={self.hash!r}, "
            f"assistant_uuid={self.assistant_uuid!r}, "
            f"claude_session_id={self.claude_session_id!r})"
        )


def hash_key(hash_: str) -> bytes | str:
    """A lineage hash as the index keys it: the 32 bytes of a 64-digit lowercase hex
    hash, any other text as it is (the two never collide: one is ``bytes``). Not a
    checkpoint."""
    try:
        digest = bytes.fromhex(hash_)
    except ValueError:
        return hash_
    return digest if len(digest) == 32 and digest.hex() == hash_ else hash_


def _packed_uuid(text: str | None) -> bytes | str | None:
    """A canonical uuid's 16 bytes; any other text (or ``None``) as it is."""
    if text is None:
        return None
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return text
    return parsed.bytes if str(parsed) == text else text
