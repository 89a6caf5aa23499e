"""The lineage index: every completed turn's place in its session's conversation, and
how a request's conversation resolves against them (continue, fork or new).

Kept in memory for resolving without a wait, written through to the session store
(SQLite) so that it survives a restart, and scoped by principal: nothing of one API
key's conversations is ever found for another. The hashes are ``app.sessions._lineage``'s.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from actors import Observer, SessionKey, SessionRecord

from ._lineage import Lineage
from ._mark import Mark, hash_key

__all__ = ["LineageIndex", "LineageStore", "Mark", "Parent", "Route", "mint_session_id"]


@dataclass(frozen=True, slots=True)
class Parent:
    """The session and turn a fork branched off."""

    session_id: str
    turn: int


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request's new turn runs (``LineageIndex.resolve``).

    Attributes:
        kind: ``continue`` an existing session; ``fork`` a new branch of ``fork_from``;
            ``new`` conversation.
        session_id: the session to run on; ``None``: a new one with a server-minted id.
        known: how many of the request's complete turns the session's conversation
            holds (all of them to continue, the fork point's turn to fork, none for a new
            session): the rest is given to it as context.
        fork_from: the turn a fork branches off.
        displace: a fork under the caller's own session id, which a session holds: that
            session (the old branch) moves to a new id first.
    """

    kind: Literal["continue", "fork", "new"]
    session_id: str | None
    known: int
    fork_from: Mark | None = None
    displace: bool = False


class LineageStore(Protocol):
    """Where the index writes itself through (``SessionStore``); each ``record_*`` or
    ``rename_*`` call queues a write without waiting (not a checkpoint)."""

    async def load(self, key: SessionKey) -> SessionRecord | None:
        """The stored record of session ``key``, if any."""
        ...

    def record_mark(self, principal: str, mark: Mark) -> None: ...

    def record_parent(self, principal: str, session_id: str, parent: Parent) -> None: ...

    def rename_session(self, principal: str, old: str, new: str) -> None: ...

    async def lineage(
        self, principal: str | None = None
    ) -> tuple[list[tuple[str, Mark]], list[tuple[str, str, Parent]]]:
        """The stored marks (oldest first) and parents, of ``principal`` if given."""
        ...


def mint_session_id() -> str:
    """A new server-chosen session id (``conv_`` and 32 hex digits). Not a checkpoint."""
    return f"conv_{uuid.uuid4().hex}"


class LineageIndex(Observer):
    """Every known session's marks, heads and parents, by principal.

    Resolution, recording and renaming are synchronous (no checkpoint), so a request
    resolves, takes its session and records without another request slipping between.
    An ``Observer`` of the supervisor: a session it forgets is forgotten here too.

    Args:
        store: where every change is written through (and sessions not running are
            looked up), or ``None`` (memory only).
        shared: other servers write to ``store`` too (a cluster): ``refresh`` reloads a
            principal's lineage from it before each placement.
    """

    def __init__(self, store: LineageStore | None = None, *, shared: bool = False) -> None:
        self.store = store
        self.shared = shared
        # Per principal, each hash's marks: one ``Mark``, or a list of two or more (most
        # hashes have one; a list and a (principal, hash) key for each would be ~150
        # bytes more for every turn the index keeps). Read with ``_marks``.
        # Keyed by ``Mark.key`` (``hash_key``): the mark's own bytes, no copy.
        self._by_hash: dict[str, dict[bytes | str, Mark | list[Mark]]] = collections.defaultdict(
            dict
        )
        self._by_session: dict[tuple[str, str], list[Mark]] = collections.defaultdict(list)
        self._heads: dict[tuple[str, str], Mark] = {}
        self._parents: dict[tuple[str, str], Parent] = {}
        self._taken: collections.Counter[tuple[str, str]] = collections.Counter()
        # Per principal, the session ids its keys above may use (a superset), so
        # ``refresh`` drops one principal's entries without scanning everyone's (its
        # hashes are those of its sessions' marks).
        self._sessions_of: dict[str, set[str]] = collections.defaultdict(set)

    def load(
        self,
        marks: Iterable[tuple[str, Mark]],
        parents: Iterable[tuple[str, str, Parent]] = (),
    ) -> None:
        """Add what a store kept: ``(principal, mark)`` oldest first, and ``(principal,
        session id, parent)``. Not written back. Not a checkpoint."""
        for principal, mark in marks:
            self._add(principal, mark)
        for principal, session_id, parent in parents:
            self._parents[principal, session_id] = parent
            self._sessions_of[principal].add(session_id)

    async def refresh(self, principal: str) -> None:
        """With a ``shared`` store, replace ``principal``'s marks and parents by the
        store's (which has every node's, and this node's queued writes first); else
        nothing. Cancellation leaves the index as it was."""
        if not self.shared or self.store is None:
            return
        marks, parents = await self.store.lineage(principal)
        self._by_hash.pop(principal, None)
        for session_id in self._sessions_of.pop(principal, ()):
            self._by_session.pop((principal, session_id), None)
            self._heads.pop((principal, session_id), None)
            self._parents.pop((principal, session_id), None)
        self.load(marks, parents)

    # -- Resolving ---------------------------------------------------------------------

    def resolve(
        self, principal: str, session_id: str | None, lineage: Lineage, *, exists: bool
    ) -> Route:
        """Where a request's new turn runs. In this order (``m``: the request's complete
        turns; the first rule that applies wins):

        1. **Continue** the session whose head (latest completed turn) is the request's
           whole history ``h_m`` and that has no lineage turn under way: the caller's
           own session if it is one, else any of the principal's.
        2. **Fork** after the latest turn ``k <= m`` whose hash ``h_k`` is a completed
           turn of one of the principal's sessions (the caller's preferred): an edited
           message (``k < m``), a regenerated answer (``k = m``, the session moved on),
           or a head whose turn is under way (two identical requests at once). With a
           session id that a session holds, the fork takes that id (``displace``).
        3. With a session id: **continue** that session if it ``exists`` (a history it
           does not know is Claude Code's compaction, or a client that sends only the
           new message), else a **new** session of that id.
        4. Without: a **new** session with a server-minted id.

        Args:
            principal: the caller; only its sessions are looked at.
            session_id: the caller's session id, if it gave one.
            lineage: the request's conversation (``lineage_of``).
            exists: whether a session of ``session_id`` exists (running or stored).

        Not a checkpoint.
        """
        m = lineage.turns
        if m:
            head = self._continuable(principal, session_id, hash_key(lineage.prefix))
            if head is not None:
                return Route("continue", head.session_id, m)
            for k in range(m, 0, -1):
                key = hash_key(lineage.hashes[k - 1])
                mark = self._fork_point(principal, session_id, key)
                if mark is not None:
                    displace = session_id is not None and exists
                    return Route("fork", session_id, k, mark, displace)
        if session_id is not None:
            return Route("continue", session_id, m) if exists else Route("new", session_id, 0)
        return Route("new", None, 0)

    def _continuable(self, principal: str, session_id: str | None, key: bytes | str) -> Mark | None:
        heads = [
            mark
            for mark in self._marks(principal, key)
            if self._heads.get((principal, mark.session_id)) is mark
            and not self._taken[principal, mark.session_id]
        ]
        return _preferred(heads, session_id)

    def _fork_point(self, principal: str, session_id: str | None, key: bytes | str) -> Mark | None:
        marks = [m for m in self._marks(principal, key) if m.fork_point]
        return _preferred(marks, session_id)

    @contextmanager
    def taking(self, principal: str, session_id: str) -> Iterator[None]:
        """Mark the session's head as taken for the block (a lineage turn is under way
        on it): ``resolve`` forks rather than continue it meanwhile."""
        self._taken[principal, session_id] += 1
        try:
            yield
        finally:
            self._taken[principal, session_id] -= 1
            if not self._taken[principal, session_id]:
                del self._taken[principal, session_id]

    def taken(self, principal: str, session_id: str) -> bool:
        """Whether a lineage turn is under way on the session. Not a checkpoint."""
        return bool(self._taken.get((principal, session_id)))

    # -- Recording ---------------------------------------------------------------------

    def record(self, principal: str, mark: Mark, *, parent: Parent | None = None) -> None:
        """A turn completed: ``mark`` is its session's head now. ``parent``: the session
        is a fork, and this its first completed turn. Written through. Not a checkpoint."""
        self._add(principal, mark)
        if self.store is not None:
            self.store.record_mark(principal, mark)
        if parent is not None and (principal, mark.session_id) not in self._parents:
            self._parents[principal, mark.session_id] = parent  # its session: in _add
            if self.store is not None:
                self.store.record_parent(principal, mark.session_id, parent)

    def _add(self, principal: str, mark: Mark) -> None:
        head = self._heads.get((principal, mark.session_id))
        if head is not None:
            # A session's marks share one copy of its ids: each turn brings new strings
            # (its session id from the request, its Claude session id from the CLI's
            # JSON), which its mark would keep for as long as the session is known.
            same = head.claude_session_id == mark.claude_session_id
            mark = replace(
                mark,
                session_id=head.session_id,
                claude_session_id=head.claude_session_id if same else mark.claude_session_id,
            )
        self._sessions_of[principal].add(mark.session_id)
        hashes = self._by_hash[principal]
        found = hashes.get(mark.key)
        if found is None:
            hashes[mark.key] = mark
        elif isinstance(found, list):
            found.append(mark)
        else:
            hashes[mark.key] = [found, mark]
        self._by_session[principal, mark.session_id].append(mark)
        self._heads[principal, mark.session_id] = mark

    def rename(self, principal: str, old: str, new: str) -> None:
        """Session ``old`` is ``new`` from now on: its marks, head and parent move, and
        forks of it name ``new`` as their parent. Written through. Not a checkpoint."""
        marks = self._by_session.pop((principal, old), [])
        moved = {id(mark): replace(mark, session_id=new) for mark in marks}
        for mark in marks:
            self._set_marks(
                principal,
                mark.key,
                [moved.get(id(m), m) for m in self._marks(principal, mark.key)],
            )
        if marks:
            self._by_session[principal, new] = [moved[id(m)] for m in marks]
            self._heads[principal, new] = moved[id(self._heads.pop((principal, old)))]
        if (parent := self._parents.pop((principal, old), None)) is not None:
            self._parents[principal, new] = parent
        self._sessions_of[principal].discard(old)
        self._sessions_of[principal].add(new)
        for key, parent in self._parents.items():
            if key[0] == principal and parent.session_id == old:
                self._parents[key] = replace(parent, session_id=new)
        if self.store is not None:
            self.store.rename_session(principal, old, new)

    def forget(self, principal: str, session_id: str) -> None:
        """Drop a session's marks, head and parent (the store deletes its rows with the
        session's). Forks of it keep naming it as their parent. Not a checkpoint."""
        for mark in self._by_session.pop((principal, session_id), []):
            kept = [m for m in self._marks(principal, mark.key) if m is not mark]
            self._set_marks(principal, mark.key, kept)
        self._heads.pop((principal, session_id), None)
        self._parents.pop((principal, session_id), None)
        self._sessions_of[principal].discard(session_id)

    def session_forgotten(self, key: SessionKey) -> None:
        self.forget(key.principal, key.session_id)

    def _marks(self, principal: str, key: bytes | str) -> list[Mark]:
        """The principal's marks whose hash has ``key`` (``hash_key``), oldest first. Not
        a checkpoint."""
        found = self._by_hash.get(principal, {}).get(key)
        if found is None:
            return []
        return found if isinstance(found, list) else [found]

    def _set_marks(self, principal: str, key: bytes | str, marks: list[Mark]) -> None:
        """Make ``marks`` the principal's marks whose hash has ``key`` (none: forget
        it)."""
        hashes = self._by_hash[principal]
        if len(marks) > 1:
            hashes[key] = marks
        elif marks:
            hashes[key] = marks[0]
        else:
            hashes.pop(key, None)
            if not hashes:
                del self._by_hash[principal]

    # -- Reading -----------------------------------------------------------------------

    def knows(self, principal: str, session_id: str) -> bool:
        """Whether the session has a completed turn on record. Not a checkpoint."""
        return (principal, session_id) in self._heads

    def head(self, principal: str, session_id: str) -> Mark | None:
        """The session's latest completed turn, if any. Not a checkpoint."""
        return self._heads.get((principal, session_id))

    def parent(self, principal: str, session_id: str) -> Parent | None:
        """The session and turn the session forked from, if it is a fork."""
        return self._parents.get((principal, session_id))


def _preferred(marks: list[Mark], session_id: str | None) -> Mark | None:
    """The caller's own session's mark if there is one, else the latest recorded."""
    own = [mark for mark in marks if mark.session_id == session_id]
    return (own or marks or [None])[-1]
