"""Where the session store keeps its tables: a SQLite file (one node, the default) or
PostgreSQL (a cluster). Both run a list of statements as one transaction, blocking (the
store calls them from a worker thread, one at a time), written once for both: SQLite's
``?`` placeholders (turned into psycopg's ``%s``) and SQL both accept (``ON CONFLICT``).

Opening either applies the schema's migrations (``app.sessions._schema``). SQLite: a
file from before migrations is adopted (the columns added since its release are added
first); a damaged file (not a database, or corrupt) is set aside and replaced. PostgreSQL:
one connection; a connection found lost when a transaction begins is reopened and the
transaction run on the new one (nothing of it had reached the server); lost later, the
statement fails (``psycopg.OperationalError``) and the next one reconnects.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import psycopg

from ._schema import SESSION_MIGRATIONS, Dialect, Migration, apply_migrations

log = logging.getLogger(__name__)

Statement = tuple[str, Sequence[object]]


class Backend(Protocol):
    """A database for ``SessionStore``."""

    dialect: Dialect
    errors: tuple[type[Exception], ...]  # what a failed statement raises

    def transaction(
        self, statements: Sequence[Statement], guard: Statement | None = None
    ) -> list[list[tuple]] | None:
        """Run ``statements`` in one transaction and return each one's rows (empty for
        a statement that returns none). With ``guard``, a query run first: if it finds
        no row, nothing else is run and the result is ``None``. Blocking.

        Raises:
            One of ``errors``: a statement failed; nothing was applied.
        """
        ...

    def close(self) -> None: ...


# Columns of ``sessions`` that a SQLite file from before migrations may lack (added by
# releases before then); they are added when such a file is adopted.
LEGACY_COLUMNS = {"session_model": "TEXT"}


class SqliteBackend:
    """The session store's SQLite file at ``path`` (created, 0600), migrated."""

    dialect: Dialect = "sqlite"
    errors = (sqlite3.Error,)

    def __init__(self, path: Path, migrations: Sequence[Migration] = SESSION_MIGRATIONS) -> None:
        self.connection = _connect(path, migrations)

    def transaction(
        self, statements: Sequence[Statement], guard: Statement | None = None
    ) -> list[list[tuple]] | None:
        connection = self.connection
        connection.execute("BEGIN")  # autocommit mode: the transaction is explicit
        try:
            if guard is not None and not connection.execute(*guard).fetchall():
                connection.execute("ROLLBACK")
                return None
            results = [connection.execute(sql, tuple(args)).fetchall() for sql, args in statements]
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return results

    def close(self) -> None:
        self.connection.close()


class PostgresBackend:
    """The session store's tables in the PostgreSQL database at ``url``, migrated: one
    connection (the store's writer is one task), reopened after it is lost.

    Raises (when created):
        psycopg.OperationalError: the database cannot be reached (within 10 s).
    """

    dialect: Dialect = "postgresql"
    errors = (psycopg.Error,)

    def __init__(self, url: str, migrations: Sequence[Migration] = SESSION_MIGRATIONS) -> None:
        self._url = url
        self._connection = self._connect()
        self.reconnects = 0  # connections found lost and reopened
        applied = apply_migrations(self._connection, "postgresql", migrations)
        if applied:
            log.info("session database: applied schema migrations %s", applied)

    def _connect(self) -> psycopg.Connection:
        # Autocommit: every transaction is an explicit ``transaction()`` block.
        return psycopg.connect(self._url, connect_timeout=10, autocommit=True)

    def transaction(
        self, statements: Sequence[Statement], guard: Statement | None = None
    ) -> list[list[tuple]] | None:
        for attempt in (1, 2):
            if self._connection.closed or self._connection.broken:
                self._connection = self._connect()
            connection = self._connection
            begun = False
            try:
                with connection.transaction():
                    begun = True
                    if guard is not None:
                        sql, args = guard
                        if not connection.execute(_pg(sql), tuple(args)).fetchall():
                            return None
                    results = []
                    for sql, args in statements:
                        cursor = connection.execute(_pg(sql), tuple(args))
                        results.append(cursor.fetchall() if cursor.description else [])
                    return results
            except psycopg.OperationalError:
                connection.close()  # reopened for the next transaction
                if begun or attempt == 2:
                    raise
                self.reconnects += 1
                log.warning("the connection to the session database was lost: reconnecting")
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._connection.close()


class DatabaseUnreachableError(RuntimeError):
    """``database_url`` names a PostgreSQL server that cannot be reached or refuses us."""


def check_database(url: str, *, timeout_s: float = 10) -> None:
    """Connect to ``url`` once and disconnect (blocking, at most about ``timeout_s``).

    Raises:
        DatabaseUnreachableError: it failed; the message names ``database_url`` and
            psycopg's reason (which holds host and port, never the password).
    """
    try:
        psycopg.connect(url, connect_timeout=max(1, round(timeout_s))).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        raise DatabaseUnreachableError(
            f"database_url: cannot connect to PostgreSQL: {reason}"
        ) from None


def _pg(sql: str) -> str:
    """A statement with SQLite's ``?`` placeholders in psycopg's ``%s`` style (our SQL
    has no other ``?`` or ``%``)."""
    return sql.replace("?", "%s")


def _connect(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """Open (creating) and migrate the database; a damaged one is renamed aside and
    replaced.

    Raises:
        sqlite3.Error: it cannot be opened for another reason (locked, unwritable).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)  # private from the start: before sqlite writes anything to it
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        _configure(connection)
        _adopt(connection)
        apply_migrations(connection, "sqlite", migrations)
        connection.execute("SELECT count(*) FROM sessions").fetchone()
        return connection
    except sqlite3.DatabaseError as exc:
        connection.close()
        if not _damaged(exc):
            raise
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
        _configure(connection)
        apply_migrations(connection, "sqlite", migrations)
        return connection


def _configure(connection: sqlite3.Connection) -> None:
    """Make ``connection``'s database write-ahead logged, syncing to disk at checkpoints
    rather than at every commit (``synchronous=NORMAL``, SQLite's advice for WAL: a
    commit can be lost to a power failure, never to a crash of the server, and the file
    is never corrupted). A turn writes several records: with a sync each (``FULL``) a
    commit took ~630 µs on this machine's disk, ~30 µs without, and warm turns were
    ~2 ms slower (TTFT 1.23x-1.25x the SDK alone against 1.16x-1.21x, three benchmark
    runs each, alternating)."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the file is not a database or is corrupt (not, say, locked)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # not from SQLite itself
        return False
    return code & 0xFF in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


def _adopt(connection: sqlite3.Connection) -> None:
    """A file from before migrations (a ``sessions`` table, no ``schema_migrations``):
    add the ``LEGACY_COLUMNS`` it lacks, so it has migration 1's shape; migration 1
    then adds the tables it lacks."""
    tables = {
        name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    if "schema_migrations" in tables or "sessions" not in tables:
        return
    have = {row[1] for row in connection.execute("PRAGMA table_info(sessions)")}
    for name, kind in LEGACY_COLUMNS.items():
        if name not in have:
            connection.execute(f"ALTER TABLE sessions ADD COLUMN {name} {kind}")
