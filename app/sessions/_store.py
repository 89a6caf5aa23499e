"""Session records, so a restarted server (or, in a cluster, any node) resumes known
sessions: in SQLite in the state directory, or in PostgreSQL (``app.sessions._backends``).

One row per session: (principal, session id) -> Claude session id, workspace, turn
count, usage and cost totals, times, the model that last answered (``model``) and the
model the session runs (``session_model``, as named to its CLI). Written after every
turn (an ``Observer``) and read when a turn arrives for a session that is not running
(a ``SessionDirectory``). Beside them, the lineage of each session (``lineage``: one
row per completed turn, see ``app.sessions._lineage_index``) and the parent of each
fork (``forks``); they go with their session's row when it is deleted, forgotten or
renamed. All database work goes through one ordered queue to one writer task
(``app.sessions._writer``); a failing database is reported and counted, never a crash.
In a cluster, every write about a session is fenced by this node's lease on it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from actors import Observer, SessionKey, SessionRecord, TurnCompleted, TurnRecord

from ._backends import Backend, PostgresBackend, SqliteBackend
from ._lineage_index import Mark, Parent
from ._schema import SESSION_MIGRATIONS, Migration
from ._writer import Fence, Operation, OrderedWriter

UPSERT = """
INSERT INTO sessions (principal, session_id, claude_session_id, workspace, model,
                      created_at, last_active_at, turns, input_tokens, output_tokens, cost_usd,
                      session_model)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (principal, session_id) DO UPDATE SET
    session_model = excluded.session_model,
    claude_session_id = excluded.claude_session_id,
    workspace = excluded.workspace,
    model = COALESCE(excluded.model, sessions.model),
    last_active_at = excluded.last_active_at,
    turns = excluded.turns,
    input_tokens = sessions.input_tokens + excluded.input_tokens,
    output_tokens = sessions.output_tokens + excluded.output_tokens,
    cost_usd = sessions.cost_usd + excluded.cost_usd
"""
DELETE = "DELETE FROM sessions WHERE principal = ? AND session_id = ?"
PRINCIPALS = "SELECT DISTINCT principal FROM sessions"

# The statements that go with DELETE (same arguments), in its transaction.
DELETE_LINEAGE = (
    "DELETE FROM lineage WHERE principal = ? AND session_id = ?",
    "DELETE FROM forks WHERE principal = ? AND session_id = ?",
)
# Renaming a session: arguments (new, principal, old) for each, in one transaction.
RENAME = (
    "UPDATE sessions SET session_id = ? WHERE principal = ? AND session_id = ?",
    "UPDATE lineage SET session_id = ? WHERE principal = ? AND session_id = ?",
    "UPDATE forks SET session_id = ? WHERE principal = ? AND session_id = ?",
    "UPDATE forks SET parent_session_id = ? WHERE principal = ? AND parent_session_id = ?",
)


class SessionStore(OrderedWriter, Observer):
    """The session store: a ``SessionDirectory`` for the supervisor and an ``Observer``
    that records every turn. Create with ``open_session_store``.

    Every statement, read or write, goes through one queue to one writer task, so the
    statements about a session are applied in the order they were made: a turn's record
    can never land after the session's deletion and bring its row back.
    """

    async def load(self, key: SessionKey) -> SessionRecord | None:
        """The record of ``key``, or ``None``."""
        rows = await self._run(
            "SELECT claude_session_id, workspace, turns, created_at, last_active_at, "
            "session_model FROM sessions WHERE principal = ? AND session_id = ?",
            key.principal,
            key.session_id,
        )
        if not rows:
            return None
        claude_session_id, workspace, turns, created_at, last_active_at, model = rows[0]
        return SessionRecord(
            key, Path(workspace), claude_session_id, turns, created_at, last_active_at, model
        )

    async def records(self, principal: str) -> list[SessionRecord]:
        """Every recorded session of ``principal``."""
        rows = await self._run(
            "SELECT session_id, claude_session_id, workspace, turns, created_at, "
            "last_active_at, session_model FROM sessions WHERE principal = ?",
            principal,
        )
        return [
            SessionRecord(
                SessionKey(session_id, principal), Path(cwd), claude, turns, t0, t1, model
            )
            for session_id, claude, cwd, turns, t0, t1, model in rows
        ]

    async def principals(self) -> list[str]:
        """Every principal with a recorded session (for operators' views)."""
        return [principal for (principal,) in await self._run(PRINCIPALS)]

    async def delete(self, key: SessionKey) -> None:
        """Forget ``key``'s record and lineage, after every record of it queued before
        (in a cluster, only while this node holds the session's lease)."""
        await self._run(
            DELETE,
            key.principal,
            key.session_id,
            more=self._with_lineage(key),
            about=(key.principal, key.session_id),
        )

    @staticmethod
    def _with_lineage(key: SessionKey) -> tuple[tuple[str, tuple[object, ...]], ...]:
        return tuple((sql, (key.principal, key.session_id)) for sql in DELETE_LINEAGE)

    async def count(self) -> int:
        return (await self._run("SELECT count(*) FROM sessions"))[0][0]

    # -- Observer: called synchronously by actors; queued for the writer -------------

    def turn_ended(self, record: TurnRecord) -> None:
        session, outcome = record.session, record.outcome
        if session is None:  # one-turn sessions are not kept
            return
        completed = outcome if isinstance(outcome, TurnCompleted) else None
        usage = completed.usage if completed else None
        self._enqueue(
            UPSERT,
            session.key.principal,
            session.key.session_id,
            session.claude_session_id,
            str(session.cwd),
            completed.model if completed else None,
            session.created_at,
            session.last_active_at,
            session.turns,
            usage.input_tokens if usage else 0,
            usage.output_tokens if usage else 0,
            (completed.total_cost_usd or 0.0) if completed else 0.0,
            session.model,
            about=(session.key.principal, session.key.session_id),
        )

    def session_forgotten(self, key: SessionKey) -> None:
        self._enqueue(
            DELETE,
            key.principal,
            key.session_id,
            more=self._with_lineage(key),
            about=(key.principal, key.session_id),
        )

    # -- Lineage (a ``LineageStore`` for ``app.sessions._lineage_index``) --------------

    def record_mark(self, principal: str, mark: Mark) -> None:
        """Queue a completed turn's lineage mark. Not a checkpoint."""
        self._enqueue(
            "INSERT INTO lineage (principal, session_id, turn, hash, assistant_uuid, "
            "claude_session_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            principal,
            mark.session_id,
            mark.turn,
            mark.hash,
            mark.assistant_uuid,
            mark.claude_session_id,
            time.time(),
            about=(principal, mark.session_id),
        )

    def record_parent(self, principal: str, session_id: str, parent: Parent) -> None:
        """Queue the parent of a fork. Not a checkpoint."""
        self._enqueue(
            "INSERT INTO forks (principal, session_id, parent_session_id, parent_turn, "
            "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (principal, session_id) DO UPDATE "
            "SET parent_session_id = excluded.parent_session_id, "
            "parent_turn = excluded.parent_turn, created_at = excluded.created_at",
            principal,
            session_id,
            parent.session_id,
            parent.turn,
            time.time(),
            about=(principal, session_id),
        )

    def rename_session(self, principal: str, old: str, new: str) -> None:
        """Queue renaming a session everywhere (its record, lineage and fork rows, and
        forks' parent rows), in one transaction. Not a checkpoint."""
        first, *rest = RENAME
        self._enqueue(
            first,
            new,
            principal,
            old,
            more=tuple((sql, (new, principal, old)) for sql in rest),
            about=(principal, old),
        )

    async def lineage(
        self, principal: str | None = None
    ) -> tuple[list[tuple[str, Mark]], list[tuple[str, str, Parent]]]:
        """Every lineage mark (``(principal, mark)``, oldest first) and every fork's parent
        (``(principal, session id, parent)``), for ``LineageIndex.load``; only
        ``principal``'s if given. One transaction (a consistent view of both), queued
        behind this node's earlier writes."""
        where, args = ("", ()) if principal is None else (" WHERE principal = ?", (principal,))
        marks, parents = await self._run_all(
            "SELECT principal, session_id, turn, hash, assistant_uuid, claude_session_id "
            f"FROM lineage{where} ORDER BY rowid",
            *args,
            more=(
                (
                    "SELECT principal, session_id, parent_session_id, parent_turn "
                    f"FROM forks{where}",
                    args,
                ),
            ),
        )
        return (
            [(p, Mark.of(sid, turn, h, uuid_, claude)) for p, sid, turn, h, uuid_, claude in marks],
            [(p, sid, Parent(parent, turn)) for p, sid, parent, turn in parents],
        )


# Records waiting for the writer at most; beyond, a record is dropped and counted.
MAX_QUEUED = 10_000


@asynccontextmanager
async def open_session_store(
    path: Path,
    *,
    database_url: str | None = None,
    fence: Fence | None = None,
    drain_timeout_s: float = 10.0,
    migrations: Sequence[Migration] = SESSION_MIGRATIONS,
) -> AsyncIterator[SessionStore]:
    """Open the store for the block, with its writer task: the SQLite file at ``path``,
    or with ``database_url`` the PostgreSQL database there. Either is first migrated to
    ``migrations`` (``app.sessions._schema``; a cluster node passes its longer list).
    ``fence``: this node's leases, to fence every write about a session (a cluster).

    Leaving the block applies every queued record first; if the block is left by
    cancellation (shutdown), queued records are still applied for at most
    ``drain_timeout_s`` seconds. Then the database is closed.

    Raises:
        psycopg.OperationalError: the PostgreSQL database cannot be reached.
        sqlite3.Error: the SQLite file cannot be opened (other than damaged: that one is
            set aside and replaced).
    """
    backend: Backend = await trio.to_thread.run_sync(
        lambda: (
            SqliteBackend(path, migrations)
            if database_url is None
            else PostgresBackend(database_url, migrations)
        )
    )
    send, receive = trio.open_memory_channel[Operation](MAX_QUEUED)
    store = SessionStore(backend, send, fence)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.write_in_order, receive, drain_timeout_s)
            with send:
                yield store
    finally:
        backend.close()
