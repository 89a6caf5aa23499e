"""The session catalogue: every session a caller has, running or resting, and the one
call that deletes a session everywhere it lives."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from actors import SessionInfo, SessionKey, SessionNotFoundError, SessionRecord, Supervisor

from ._lineage_index import LineageIndex
from ._store import SessionStore
from ._transcripts import conversation_of, delete_conversation, read_conversation

if TYPE_CHECKING:
    from ..cluster._node import Node


class SessionCatalogue:
    """Sessions as the management API sees them: the supervisor's running ones and,
    with a store, those known from before a restart (resting: idle and hibernated).

    Args:
        supervisor: runs the sessions.
        claude_config_dir: the CLI's config directory, where transcripts live.
        store: the session store, if the server keeps one.
        lineage: the lineage index (a deleted session leaves it), if any.
        cluster: this server's cluster node, if it is one: conversations are read from
            and deleted in the cluster's shared transcripts, and a session another node
            drives is taken over before it is deleted.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        claude_config_dir: Path,
        store: SessionStore | None = None,
        lineage: LineageIndex | None = None,
        *,
        cluster: Node | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._config_dir = claude_config_dir
        self._store = store
        self.lineage = lineage
        self._cluster = cluster

    async def sessions(self, principal: str) -> list[SessionInfo]:
        """The principal's sessions, oldest first (then by id)."""
        mine = {i.session_id: i for i in self._supervisor.sessions() if i.principal == principal}
        if self._store is not None:  # sessions known from before a restart, not running yet
            for record in await self._store.records(principal):
                mine.setdefault(record.key.session_id, resting(record))
        return sorted(mine.values(), key=lambda i: (i.created_at, i.session_id))

    async def all_sessions(self) -> list[SessionInfo]:
        """Every principal's sessions (for operators), oldest first (then by id and
        principal)."""
        every = {(i.principal, i.session_id): i for i in self._supervisor.sessions()}
        if self._store is not None:
            for principal in await self._store.principals():
                for record in await self._store.records(principal):
                    every.setdefault((principal, record.key.session_id), resting(record))
        return sorted(every.values(), key=lambda i: (i.created_at, i.session_id, i.principal))

    async def session(self, key: SessionKey) -> SessionInfo:
        """A session: running, or known from before a restart.

        Raises:
            SessionNotFoundError: neither.
        """
        info = self._supervisor.session(key)
        if info is None and self._store is not None and (record := await self._store.load(key)):
            info = resting(record)
        if info is None:
            raise SessionNotFoundError(f"no session {key.session_id!r}")
        return info

    async def messages(self, info: SessionInfo) -> list[dict[str, Any]]:
        """The conversation of a session as its CLI's transcript holds it (see
        ``read_conversation``); empty before its first turn. Reads in a thread."""
        if not info.claude_session_id:
            return []
        if self._cluster is not None:
            entries = await self._cluster.transcripts.entries(info.claude_session_id)
            if entries is not None:
                return conversation_of(entries)
        return await trio.to_thread.run_sync(
            read_conversation, self._config_dir, info.claude_session_id
        )

    async def delete(self, key: SessionKey) -> int:
        """Delete a session everywhere: its CLI and actor (if running), its working
        directory, its record and lineage in the store, and its transcripts. Its forks
        keep their own conversations (a fork's transcript holds its whole history) and
        name it as their parent still; the session it forked from is not touched.

        Returns:
            How many transcript files were deleted.

        Raises:
            SessionNotFoundError: the session is neither running nor known.
            CapacityError: (a cluster) another node drives the session and did not hand
                it over in time.

        If cancelled, what was deleted stays deleted.
        """
        if self._cluster is None:
            return await self._delete(key)
        await self._cluster.ownership.claim(key)  # no other node may drive it meanwhile
        try:
            return await self._delete(key)
        finally:
            with trio.CancelScope(shield=True):
                await self._cluster.ownership.release(key)

    async def _delete(self, key: SessionKey) -> int:
        try:
            claude_session_id = (await self._supervisor.close_session(key)).claude_session_id
        except SessionNotFoundError:
            # Not running now, but perhaps known from before a restart.
            known = None if self._store is None else await self._store.load(key)
            if known is None:
                raise
            claude_session_id = known.claude_session_id
            await trio.to_thread.run_sync(shutil.rmtree, known.cwd, True)
        if self.lineage is not None:
            self.lineage.forget(key.principal, key.session_id)
        if self._store is not None:
            await self._store.delete(key)
        if not claude_session_id:
            return 0
        deleted = await trio.to_thread.run_sync(
            delete_conversation, self._config_dir, claude_session_id
        )
        if self._cluster is not None:
            deleted += bool(await self._cluster.transcripts.delete(claude_session_id))
        return deleted


def resting(record: SessionRecord) -> SessionInfo:
    """A session known from the store but not running: idle and hibernated."""
    return SessionInfo(
        session_id=record.key.session_id,
        principal=record.key.principal,
        state="idle",
        live=False,
        cli_pid=None,
        claude_session_id=record.claude_session_id,
        turns=record.turns,
        restarts=0,
        last_error=None,
        created_at=record.created_at,
        last_active_at=record.last_active_at,
        mailbox_depth=0,
        listeners=0,
        one_turn=False,
        model=record.model,
    )
