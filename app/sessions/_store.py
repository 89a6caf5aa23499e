"""Session records in SQLite, so a restarted server resumes known sessions.

One row per session: (principal, session id) -> Claude session id, workspace, turn
count, usage and cost totals, times, the model that last answered (``model``) and the
model the session runs (``session_model``, as named to its CLI). Written after every
turn (an ``Observer``) and read when a turn arrives for a session that is not running
(a ``SessionDirectory``). Beside them, the lineage of each session (``lineage``: one
row per completed turn, see ``app.sessions._lineage_index``) and the parent of each
fork (``forks``); they go with their session's row when it is deleted, forgotten or
renamed. A database from before these tables and columns gets them when opened (they
are only added: nothing else changes). All database work goes through one ordered
queue to one writer task (each statement in its own transaction, in a worker thread);
a damaged database is reported, set aside and replaced, never a crash.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from actors import Observer, SessionKey, SessionRecord, TurnCompleted, TurnRecord

from ._lineage_index import Mark, Parent

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    principal TEXT NOT NULL,
    session_id TEXT NOT NULL,
    claude_session_id TEXT,
    workspace TEXT NOT NULL,
    model TEXT,
    created_at REAL NOT NULL,
    last_active_at REAL NOT NULL,
    turns INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    session_model TEXT,
    PRIMARY KEY (principal, session_id)
)
"""

# Columns added since the first schema, with their types: added to an older database
# when it is opened (additive only, so an older server can still read the table).
ADDED_COLUMNS = {"session_model": "TEXT"}

UPSERT = """
INSERT INTO sessions (principal, session_id, claude_session_id, workspace, model,
                      created_at, last_active_at, turns, input_tokens, output_tokens, cost_usd,
                      session_model)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (principal, session_id) DO UPDATE SET
    session_model = excluded.session_model,
    claude_session_id = excluded.claude_session_id,
    workspace = excluded.workspace,
    model = COALESCE(excluded.model, model),
    last_active_at = excluded.last_active_at,
    turns = excluded.turns,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cost_usd = cost_usd + excluded.cost_usd
"""
DELETE = "DELETE FROM sessions WHERE principal = ? AND session_id = ?"
PRINCIPALS = "SELECT DISTINCT principal FROM sessions"

LINEAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS lineage (
    principal TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    hash TEXT NOT NULL,
    assistant_uuid TEXT,
    claude_session_id TEXT,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS lineage_by_session ON lineage (principal, session_id);
CREATE TABLE IF NOT EXISTS forks (
    principal TEXT NOT NULL,
    session_id TEXT NOT NULL,
    parent_session_id TEXT NOT NULL,
    parent_turn INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (principal, session_id)
);
"""
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


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the database; a damaged one is renamed aside and replaced."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)  # private from the start: before sqlite writes anything to it
    try:
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(SCHEMA)
        connection.executescript(LINEAGE_SCHEMA)
        _migrate(connection)
        connection.execute("SELECT count(*) FROM sessions").fetchone()
        return connection
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        log.error(
            "the session database %s is unreadable (%s): moved to %s; known sessions will "
            "start new conversations",
            path,
            exc,
            aside,
        )
        path.rename(aside)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute(SCHEMA)
        connection.executescript(LINEAGE_SCHEMA)
        return connection


def _migrate(connection: sqlite3.Connection) -> None:
    """Add the columns of ``ADDED_COLUMNS`` that a database from an older server lacks."""
    have = {row[1] for row in connection.execute("PRAGMA table_info(sessions)")}
    for name, kind in ADDED_COLUMNS.items():
        if name not in have:
            connection.execute(f"ALTER TABLE sessions ADD COLUMN {name} {kind}")


@dataclass(eq=False)
class _Operation:
    """One statement for the writer (and ``more``, applied after it in the same
    transaction); ``done`` is set once it was applied (or failed)."""

    sql: str
    args: tuple[object, ...]
    done: trio.Event | None = None
    more: tuple[tuple[str, tuple[object, ...]], ...] = ()
    rows: list[tuple] = field(default_factory=list)
    error: sqlite3.Error | None = None


class SessionStore(Observer):
    """The SQLite session store: a ``SessionDirectory`` for the supervisor and an
    ``Observer`` that records every turn. Create with ``open_session_store``.

    Every statement, read or write, goes through one queue to one writer task, so the
    statements about a session are applied in the order they were made: a turn's record
    can never land after the session's deletion and bring its row back.
    """

    def __init__(self, connection: sqlite3.Connection, queue: trio.MemorySendChannel[_Operation]):
        self._connection = connection
        self._queue = queue
        self.errors = 0
        self.dropped = 0  # records not queued because the queue was full

    async def _run(
        self, sql: str, *args: object, more: tuple[tuple[str, tuple[object, ...]], ...] = ()
    ) -> list[tuple]:
        """Queue a statement (and ``more`` in its transaction) behind every earlier one
        and wait for its rows.

        Raises:
            sqlite3.Error: the statement failed.
            trio.ClosedResourceError: the store is closed.
        """
        operation = _Operation(sql, args, trio.Event(), more)
        await self._queue.send(operation)
        assert operation.done is not None
        await operation.done.wait()
        if operation.error is not None:
            raise operation.error
        return operation.rows

    def _enqueue(
        self, sql: str, *args: object, more: tuple[tuple[str, tuple[object, ...]], ...] = ()
    ) -> None:
        """Queue a write without waiting (from an ``Observer`` method). Not a checkpoint."""
        try:
            self._queue.send_nowait(_Operation(sql, args, more=more))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped += 1
            log.error("the session database queue is full or closed: a record was dropped")

    async def write_in_order(
        self, queue: trio.MemoryReceiveChannel[_Operation], drain_timeout_s: float
    ) -> None:
        """The writer: apply queued statements one at a time until the queue is closed.
        If cancelled (shutdown), still applies what is queued, shielded for at most
        ``drain_timeout_s`` seconds, so the last turns are recorded."""
        with queue:
            try:
                async for operation in queue:
                    await self._apply(operation)
            finally:
                with trio.move_on_after(drain_timeout_s, shield=True):
                    while True:
                        try:
                            operation = queue.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        await self._apply(operation)

    async def _apply(self, operation: _Operation) -> None:
        def work() -> list[tuple]:
            with self._connection:  # one transaction
                rows = self._connection.execute(operation.sql, operation.args).fetchall()
                for sql, args in operation.more:
                    self._connection.execute(sql, args)
                return rows

        try:
            operation.rows = await trio.to_thread.run_sync(work)
        except sqlite3.Error as exc:
            self.errors += 1
            operation.error = exc
            if operation.done is None:  # nobody waits to hear of it
                log.exception("could not write to the session database")
        finally:
            if operation.done is not None:
                operation.done.set()

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
        """Forget ``key``'s record and lineage, after every record of it queued before."""
        await self._run(DELETE, key.principal, key.session_id, more=self._with_lineage(key))

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
        )

    def session_forgotten(self, key: SessionKey) -> None:
        self._enqueue(DELETE, key.principal, key.session_id, more=self._with_lineage(key))

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
        )

    def record_parent(self, principal: str, session_id: str, parent: Parent) -> None:
        """Queue the parent of a fork. Not a checkpoint."""
        self._enqueue(
            "INSERT OR REPLACE INTO forks (principal, session_id, parent_session_id, "
            "parent_turn, created_at) VALUES (?, ?, ?, ?, ?)",
            principal,
            session_id,
            parent.session_id,
            parent.turn,
            time.time(),
        )

    def rename_session(self, principal: str, old: str, new: str) -> None:
        """Queue renaming a session everywhere (its record, lineage and fork rows, and
        forks' parent rows), in one transaction. Not a checkpoint."""
        first, *rest = RENAME
        self._enqueue(
            first, new, principal, old, more=tuple((sql, (new, principal, old)) for sql in rest)
        )

    async def lineage(self) -> tuple[list[tuple[str, Mark]], list[tuple[str, str, Parent]]]:
        """Every lineage mark (``(principal, mark)``, oldest first) and every fork's parent
        (``(principal, session id, parent)``), for ``LineageIndex.load``."""
        marks = await self._run(
            "SELECT principal, session_id, turn, hash, assistant_uuid, claude_session_id "
            "FROM lineage ORDER BY rowid"
        )
        parents = await self._run(
            "SELECT principal, session_id, parent_session_id, parent_turn FROM forks"
        )
        return (
            [(p, Mark(sid, turn, h, uuid_, claude)) for p, sid, turn, h, uuid_, claude in marks],
            [(p, sid, Parent(parent, turn)) for p, sid, parent, turn in parents],
        )


# Records waiting for the writer at most; beyond, a record is dropped and counted.
MAX_QUEUED = 10_000


@asynccontextmanager
async def open_session_store(
    path: Path, *, drain_timeout_s: float = 10.0
) -> AsyncIterator[SessionStore]:
    """Open the store at ``path`` for the block, with its writer task.

    Leaving the block applies every queued record first; if the block is left by
    cancellation (shutdown), queued records are still applied for at most
    ``drain_timeout_s`` seconds. Then the database is closed.
    """
    connection = await trio.to_thread.run_sync(_connect, path)
    send, receive = trio.open_memory_channel[_Operation](MAX_QUEUED)
    store = SessionStore(connection, send)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.write_in_order, receive, drain_timeout_s)
            with send:
                yield store
    finally:
        connection.close()
