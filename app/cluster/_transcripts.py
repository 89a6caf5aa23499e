"""Conversation transcripts in PostgreSQL, so that any node can resume any session.

This is a ``SessionStore`` for the Claude Agent SDK (``ClaudeAgentOptions.session_store``,
see ``claude_agent_sdk.types.SessionStore``): the CLI still writes its transcript to
local disk, and the SDK mirrors every entry to ``append`` (batched; the batch of a turn
is flushed before the turn's result reaches us, so a turn we answered is stored). To
resume, the SDK calls ``load`` and writes the entries to a temporary config directory
for the CLI. Transcripts are keyed by Claude session id (a UUID, unique everywhere) and
subpath: the SDK's ``project_key`` (the working directory, which differs from node to
node) is ignored, so a session resumes wherever its workspace is.

Writes are fenced: each CLI gets its own adapter (``for_cli``) that knows which session
that CLI serves now, and an ``append`` is applied only while this node holds that
session's lease with the token it knows (in the same statement). A node that was paused
past its lease's expiry cannot add to a conversation another node took over.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from actors import SessionKey

from ._database import Database

log = logging.getLogger(__name__)

# One entry, only if the lease (principal, session id, node, token) is current.
_APPEND = """
INSERT INTO transcripts (claude_session_id, subpath, uuid, entry)
SELECT %s, %s, %s, %s
WHERE EXISTS (SELECT 1 FROM leases WHERE principal = %s AND session_id = %s
              AND node = %s AND token = %s)
ON CONFLICT DO NOTHING
"""
_LOAD = "SELECT entry FROM transcripts WHERE claude_session_id = %s AND subpath = %s ORDER BY seq"
_SUBKEYS = "SELECT DISTINCT subpath FROM transcripts WHERE claude_session_id = %s AND subpath <> ''"


class Transcripts:
    """The cluster's transcripts: ``for_cli`` gives each CLI its fenced ``SessionStore``;
    ``entries`` and ``delete`` serve the management API on any node.

    Args:
        database: the shared database.
        node: this node's id.
        fence: the token of the lease this node holds for a session, or ``None``.
    """

    def __init__(
        self, database: Database, node: str, fence: Callable[[SessionKey], int | None]
    ) -> None:
        self._database = database
        self._node = node
        self._fence = fence
        self.fenced = 0  # entries refused: this node did not hold the session's lease

    def for_cli(self, session: Callable[[], SessionKey | None]) -> CliTranscripts:
        """The ``SessionStore`` of one CLI; ``session()`` names the session it serves
        now (``None`` while it is a warm actor). Not a checkpoint."""
        return CliTranscripts(self, session)

    async def entries(self, claude_session_id: str, subpath: str = "") -> list[Any] | None:
        """A conversation's entries in the order written, or ``None`` if none are kept."""
        rows = await self._database.fetch(_LOAD, (claude_session_id, subpath))
        return [json.loads(entry) for (entry,) in rows] or None

    async def delete(self, claude_session_id: str) -> int:
        """Delete a conversation's entries (main and subagents'); returns how many."""
        return await self._database.execute(
            "DELETE FROM transcripts WHERE claude_session_id = %s", (claude_session_id,)
        )

    async def _append(
        self, key: SessionKey | None, claude_session_id: str, subpath: str, entries: list[Any]
    ) -> None:
        token = None if key is None else self._fence(key)
        if key is None or token is None:
            self.fenced += len(entries)
            log.warning(
                "transcript of %s not stored: this node holds no lease for its session",
                claude_session_id,
            )
            return
        rows = [
            (
                claude_session_id,
                subpath,
                entry.get("uuid") if isinstance(entry, dict) else None,
                json.dumps(entry, ensure_ascii=False),
                key.principal,
                key.session_id,
                self._node,
                token,
            )
            for entry in entries
        ]
        applied = await self._database.execute_many(_APPEND, rows)
        if applied < len(rows):  # duplicates (a retried batch) also count here
            log.debug("transcript of %s: %d of %d entries new", key, applied, len(rows))


class CliTranscripts:
    """The SDK ``SessionStore`` one CLI mirrors its transcript to (``Transcripts.for_cli``)."""

    def __init__(self, transcripts: Transcripts, session: Callable[[], SessionKey | None]):
        self._transcripts = transcripts
        self._session = session

    async def append(self, key: dict[str, Any], entries: list[Any]) -> None:
        """Store a batch of the CLI's entries, if this node holds the session's lease."""
        await self._transcripts._append(
            self._session(), key["session_id"], key.get("subpath") or "", entries
        )

    async def load(self, key: dict[str, Any]) -> list[Any] | None:
        """A conversation's entries, for a resume (any project key)."""
        return await self._transcripts.entries(key["session_id"], key.get("subpath") or "")

    async def list_subkeys(self, key: dict[str, Any]) -> list[str]:
        """The subagent transcripts of a conversation (their subpaths)."""
        rows = await self._transcripts._database.fetch(_SUBKEYS, (key["session_id"],))
        return [subpath for (subpath,) in rows]
