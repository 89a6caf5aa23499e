"""Session records in SQLite, so a restarted server resumes known sessions.

One row per session: (principal, session id) -> Claude session id, workspace, turn
count, usage and cost totals, and times. Written after every turn (an ``Observer``) and
read when a turn arrives for a session that is not running (a ``SessionDirectory``). All
database work runs in one worker thread at a time, each write in its own transaction;
a damaged database is reported, set aside and replaced, never a crash.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from actors import Observer, SessionKey, SessionRecord, TurnCompleted, TurnRecord

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
    PRIMARY KEY (principal, session_id)
)
"""

UPSERT = """
INSERT INTO sessions (principal, session_id, claude_session_id, workspace, model,
                      created_at, last_active_at, turns, input_tokens, output_tokens, cost_usd)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (principal, session_id) DO UPDATE SET
    claude_session_id = excluded.claude_session_id,
    workspace = excluded.workspace,
    model = COALESCE(excluded.model, model),
    last_active_at = excluded.last_active_at,
    turns = excluded.turns,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cost_usd = cost_usd + excluded.cost_usd
"""


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the database; a damaged one is renamed aside and replaced."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)  # private from the start: before sqlite writes anything to it
    try:
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(SCHEMA)
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
        return connection


class SessionStore(Observer):
    """The SQLite session store: a ``SessionDirectory`` for the supervisor and an
    ``Observer`` that records every turn. Create with ``open_session_store``."""

    def __init__(self, connection: sqlite3.Connection, nursery: trio.Nursery) -> None:
        self._connection = connection
        self._nursery = nursery
        self._limiter = trio.CapacityLimiter(1)  # one thread on the connection at a time
        self.errors = 0

    async def _run(self, sql: str, *args: object) -> list[tuple]:
        def work() -> list[tuple]:
            with self._connection:  # one transaction
                return self._connection.execute(sql, args).fetchall()

        return await trio.to_thread.run_sync(work, limiter=self._limiter)

    async def load(self, key: SessionKey) -> SessionRecord | None:
        """The record of ``key``, or ``None``."""
        rows = await self._run(
            "SELECT claude_session_id, workspace, turns, created_at, last_active_at "
            "FROM sessions WHERE principal = ? AND session_id = ?",
            key.principal,
            key.session_id,
        )
        if not rows:
            return None
        claude_session_id, workspace, turns, created_at, last_active_at = rows[0]
        return SessionRecord(
            key, Path(workspace), claude_session_id, turns, created_at, last_active_at
        )

    async def records(self, principal: str) -> list[SessionRecord]:
        """Every recorded session of ``principal``."""
        rows = await self._run(
            "SELECT session_id, claude_session_id, workspace, turns, created_at, "
            "last_active_at FROM sessions WHERE principal = ?",
            principal,
        )
        return [
            SessionRecord(SessionKey(session_id, principal), Path(cwd), claude, turns, t0, t1)
            for session_id, claude, cwd, turns, t0, t1 in rows
        ]

    async def delete(self, key: SessionKey) -> None:
        """Forget ``key``'s record."""
        await self._run(
            "DELETE FROM sessions WHERE principal = ? AND session_id = ?",
            key.principal,
            key.session_id,
        )

    async def count(self) -> int:
        return (await self._run("SELECT count(*) FROM sessions"))[0][0]

    # -- Observer: called synchronously by actors; the writes run in the background --

    def turn_ended(self, record: TurnRecord) -> None:
        if record.session is not None:  # one-turn sessions are not kept
            self._nursery.start_soon(self._save, record)

    def session_forgotten(self, key: SessionKey) -> None:
        self._nursery.start_soon(self._guarded, self.delete(key))

    async def _save(self, record: TurnRecord) -> None:
        session, outcome = record.session, record.outcome
        assert session is not None
        usage = outcome.usage if isinstance(outcome, TurnCompleted) else None
        await self._guarded(
            self._run(
                UPSERT,
                session.key.principal,
                session.key.session_id,
                session.claude_session_id,
                str(session.cwd),
                outcome.model if isinstance(outcome, TurnCompleted) else None,
                session.created_at,
                session.last_active_at,
                session.turns,
                usage.input_tokens if usage else 0,
                usage.output_tokens if usage else 0,
                (outcome.total_cost_usd or 0.0) if isinstance(outcome, TurnCompleted) else 0.0,
            )
        )

    async def _guarded(self, work) -> None:  # type: ignore[no-untyped-def]
        try:
            with trio.CancelScope(shield=True):  # a shutdown still records the last turns
                await work
        except sqlite3.Error:
            self.errors += 1
            log.exception("could not write to the session database")


@asynccontextmanager
async def open_session_store(path: Path) -> AsyncIterator[SessionStore]:
    """Open the store at ``path`` for the block; leaving it waits for pending writes
    (each is shielded, so a shutdown still records the last turns) and closes it."""
    connection = await trio.to_thread.run_sync(_connect, path)
    try:
        async with trio.open_nursery() as nursery:
            yield SessionStore(connection, nursery)
    finally:
        connection.close()
