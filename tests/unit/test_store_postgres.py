"""The session store on PostgreSQL only: a lost connection or database, an unreachable
one at start, and two nodes' stores sharing lineage (a real server per test run, a
fresh database per test; the store's behaviour on both backends is ``test_store``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
import trio

from actors import SessionKey
from app.sessions._backends import DatabaseUnreachableError, check_database
from app.sessions._lineage_index import LineageIndex, Mark, Parent, Route
from app.sessions._store import open_session_store

from .test_lineage import THREE, resolve, served
from .test_store import _turn_record

KEY = SessionKey("s", "alice")


@contextmanager
def socket_closed() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening, for the block)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _admin(database_url: str, sql: str) -> None:
    """Run ``sql`` on the server's ``postgres`` database (not the test's)."""
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


async def test_a_lost_connection_is_reopened_and_an_unusable_database_only_counted(
    database_url, tmp_path
):
    """The server ends the store's connection: the next statement reconnects and runs
    (nothing lost, no error). While the database refuses connections, records fail and
    are counted and reads raise, without ending the store; once it accepts them again,
    the next statement works."""
    name = database_url.rsplit("/", 1)[1]
    kick = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    with trio.fail_after(30):
        async with open_session_store(tmp_path, database_url=database_url) as store:
            store.turn_ended(_turn_record(KEY, 1, tmp_path))
            assert (await store.load(KEY)).turns == 1
            await trio.to_thread.run_sync(_admin, database_url, kick)
            store.turn_ended(_turn_record(KEY, 2, tmp_path))
            assert (await store.load(KEY)).turns == 2
            assert (store.reconnects, store.errors) == (1, 0)

            await trio.to_thread.run_sync(
                _admin, database_url, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false"
            )
            await trio.to_thread.run_sync(_admin, database_url, kick)
            store.turn_ended(_turn_record(KEY, 3, tmp_path))  # logged and counted
            with pytest.raises(psycopg.OperationalError):
                await store.load(KEY)
            assert store.errors == 2
            await trio.to_thread.run_sync(
                _admin, database_url, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"
            )
            store.turn_ended(_turn_record(KEY, 4, tmp_path))
            assert (await store.load(KEY)).turns == 4
            assert store.errors == 2


async def test_an_unreachable_database_stops_the_start_with_a_clear_reason(tmp_path):
    """No server at the URL: opening the store fails at once, and the start-up check
    names the setting and the reason but not the password."""
    with socket_closed() as port:
        url = f"postgresql://ccactors:hunter2@127.0.0.1:{port}/ccactors"
        with pytest.raises(psycopg.OperationalError):
            async with open_session_store(tmp_path, database_url=url):
                pass  # pragma: no cover
        with pytest.raises(DatabaseUnreachableError) as failed:
            check_database(url)
    assert "database_url" in str(failed.value) and "refused" in str(failed.value)
    assert "hunter2" not in str(failed.value)


async def test_one_nodes_lineage_reaches_another_on_refresh(database_url, tmp_path):
    """Two nodes' stores on one database: what one node records (marks, a fork's parent,
    a rename) the other resolves against after ``refresh``, not before; a node's own
    queued writes are in the database before its refresh reads."""
    with trio.fail_after(30):
        async with (
            open_session_store(tmp_path, database_url=database_url) as store_a,
            open_session_store(tmp_path, database_url=database_url) as store_b,
        ):
            a = LineageIndex(store_a, shared=True)
            b = LineageIndex(store_b, shared=True)
            served(a, "alice", "s", *THREE)
            a.record("alice", Mark.of("f", 2, "h-f", "m", "c"), parent=Parent("s", 1))
            await a.refresh("alice")  # a's own writes, read back in order
            assert resolve(a, None, *THREE, "u4") == Route("continue", "s", 3)
            assert resolve(b, None, *THREE, "u4") == Route("new", None, 0)
            await b.refresh("alice")
            assert resolve(b, None, *THREE, "u4") == Route("continue", "s", 3)
            assert b.parent("alice", "f") == Parent("s", 1)
            a.rename("alice", "s", "old")
            await a.refresh("alice")
            await b.refresh("alice")
            assert resolve(b, None, *THREE, "u4") == Route("continue", "old", 3)
            assert b.parent("alice", "f") == Parent("old", 1)
            await b.refresh("bob")  # another principal's refresh leaves alice's alone
            assert b.head("alice", "old").turn == 3
