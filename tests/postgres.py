"""PostgreSQL for tests: one throw-away server per test run (``app.cluster._postgres``),
and a fresh, empty database per test that asks for ``database_url``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from app.cluster._postgres import PostgresNotFoundError, postgres_server

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
