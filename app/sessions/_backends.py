"""Where the session store keeps its tables: a SQLite file (one node, the default) or
PostgreSQL (a cluster). Both run a list of statements as one transaction, blocking (the
store calls them from a worker thread, one at a time), with SQLite's ``?`` placeholders.

SQLite: the schema is created when the file is opened, and columns added since the
first release are added to an older file (additive only). A damaged file is set aside
and replaced. PostgreSQL: the schema is ``app.cluster._schema``'s migrations (applied
by the node at start-up); a lost connection is reopened at the next statement.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import psycopg

log = logging.getLogger(__name__)

Statement = tuple[str, Sequence[object]]


class Backend(Protocol):
    """A database for ``SessionStore``."""

    dialect: str  # "sqlite" or "postgresql"
    errors: tuple[type[Exception], ...]  # what a failed statement raises

    def transaction(
        self, statements: Sequence[Statement], guard: Statement | None = None
    ) -> list[tuple] | None:
        """Run ``statements`` in one transaction and return the first one's rows.
        With ``guard``, a query run first: if it finds no row, nothing else is run and
        the result is ``None``. Blocking."""
        ...

    def close(self) -> None: ...


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


class SqliteBackend:
    """The session store's SQLite file at ``path`` (created, 0600)."""

    dialect = "sqlite"
    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.connection = _connect(path)

    def transaction(
        self, statements: Sequence[Statement], guard: Statement | None = None
    ) -> list[tuple] | None:
        rows: list[tuple] = []
        with self.connection:  # one transaction
            if guard is not None and not self.connection.execute(*guard).fetchall():
                return None
            for number, (sql, args) in enumerate(statements):
                cursor = self.connection.execute(sql, tuple(args))
                if number == 0:
                    rows = cursor.fetchall()
        return rows

    def close(self) -> None:
        self.connection.close()


class PostgresBackend:
    """The session store's tables in the PostgreSQL database at ``url``: one connection
    (the store's writer is one task), reopened after it is lost."""

    dialect = "postgresql"
    errors = (psycopg.Error,)

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: psycopg.Connection | None = self._connect()

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._url, connect_timeout=10)

    def transaction(
        self, statements: Sequence[Statement], guard: Statement | None = None
    ) -> list[tuple] | None:
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        connection = self._connection
        rows: list[tuple] = []
        try:
            with connection.transaction():
                if guard is not None:
                    sql, args = guard
                    if not connection.execute(sql.replace("?", "%s"), tuple(args)).fetchall():
                        return None
                for number, (sql, args) in enumerate(statements):
                    cursor = connection.execute(sql.replace("?", "%s"), tuple(args))
                    if number == 0 and cursor.description is not None:
                        rows = cursor.fetchall()
        except psycopg.OperationalError:
            connection.close()  # reopened for the next statement
            raise
        return rows

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


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
