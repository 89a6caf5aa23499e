"""A small pool of PostgreSQL connections for the cluster's own statements (leases'
neighbours: transcripts, hand-off bookkeeping), used from Trio.

psycopg's async API runs on asyncio only, so statements run on psycopg's blocking
connections in Trio's worker threads; ``psycopg_pool.ConnectionPool`` (thread-safe)
keeps them open. Each call is one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import trio
from psycopg_pool import ConnectionPool

T = TypeVar("T")


class Database:
    """Statements on the shared database, each in its own transaction, off the Trio
    thread. Errors are ``psycopg.Error``. Create with ``open_database``."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query."""

        def work() -> list[tuple[Any, ...]]:
            with self._pool.connection() as conn:
                return conn.execute(sql, args).fetchall()

        return await trio.to_thread.run_sync(work)

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""

        def work() -> int:
            with self._pool.connection() as conn:
                return conn.execute(sql, args).rowcount

        return await trio.to_thread.run_sync(work)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement once per row, in one transaction; returns the rows changed."""

        def work() -> int:
            with self._pool.connection() as conn, conn.cursor() as cursor:
                changed = 0
                for row in rows:
                    cursor.execute(sql, row)
                    changed += max(cursor.rowcount, 0)
                return changed

        return await trio.to_thread.run_sync(work)

    async def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(connection)`` in a worker thread, in one transaction; its result."""

        def run() -> T:
            with self._pool.connection() as conn:
                return work(conn)

        return await trio.to_thread.run_sync(run)


@asynccontextmanager
async def open_database(url: str, *, size: int = 4) -> AsyncIterator[Database]:
    """A pool of up to ``size`` connections to ``url`` for the block.

    Raises:
        psycopg_pool.PoolTimeout: the database could not be reached within 10 s.
    """
    pool = ConnectionPool(url, min_size=1, max_size=size, open=False, timeout=10)
    await trio.to_thread.run_sync(lambda: pool.open(wait=True, timeout=10))
    try:
        yield Database(pool)
    finally:
        await trio.to_thread.run_sync(pool.close)
