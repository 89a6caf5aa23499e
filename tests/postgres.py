"""PostgreSQL for tests: one throw-away server per test run (``app.cluster._postgres``),
a fresh, empty database per test that asks for ``database_url``, and ``open_store`` to
run a store test on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager

import psycopg
import pytest

from app.cluster._postgres import PostgresNotFoundError, postgres_server
from app.cluster._schema import migrate
from app.sessions._store import SessionStore, open_session_store

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The URL of the run's PostgreSQL server (its ``postgres`` database)."""
    try:
        with postgres_server() as url:
            yield url
    except PostgresNotFoundError as exc:  # CI installs it: a missing one is a failure
        pytest.fail(str(exc))


@pytest.fixture
def database_url(postgres_server_url: str) -> str:
    """A new empty database on the run's server, for this test."""
    name = f"test_{next(_numbers)}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request, tmp_path) -> Callable[..., AbstractAsyncContextManager[SessionStore]]:
    """``open_session_store`` on each backend: a SQLite file in ``tmp_path``, then a
    fresh PostgreSQL database (migrated). Every call opens the same database."""
    if request.param == "sqlite":
        return lambda **kwargs: open_session_store(tmp_path / "s.sqlite3", **kwargs)
    url = request.getfixturevalue("database_url")
    with psycopg.connect(url) as conn:
        migrate(conn)
    return lambda **kwargs: open_session_store(tmp_path / "unused", database_url=url, **kwargs)
