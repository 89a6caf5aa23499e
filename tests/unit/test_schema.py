"""Schema migrations on both backends (``app.sessions._schema``): each step once, all or
nothing, steps contributed by another module; files from before migrations adopted."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from actors import SessionKey
from app.cluster._schema import MIGRATIONS
from app.sessions._schema import SESSION_MIGRATIONS, Migration, apply_migrations
from app.sessions._store import open_session_store

from .test_store import OLD_SESSIONS


@pytest.fixture(params=["sqlite", "postgresql"])
def connect(request, tmp_path):
    """``connect()``: a new connection to one empty database of the parametrized backend,
    as the store opens it; the dialect is ``connect.dialect``."""
    if request.param == "sqlite":

        def connect():
            return sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)

    else:
        url = request.getfixturevalue("database_url")

        def connect():
            return psycopg.connect(url, autocommit=True)

    connect.dialect = request.param
    return connect


def tables(connection) -> set[str]:
    if isinstance(connection, sqlite3.Connection):
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    return {name for (name,) in connection.execute(sql).fetchall()}


def test_a_new_database_gets_each_step_of_its_backend_once(connect):
    """Every step for the backend is applied and recorded once; opening again applies
    nothing. The cluster's steps are PostgreSQL's only."""
    expected = [1] if connect.dialect == "sqlite" else [1, 2, 3]
    with connect() as connection:
        assert apply_migrations(connection, connect.dialect, MIGRATIONS) == expected
    with connect() as connection:
        assert apply_migrations(connection, connect.dialect, MIGRATIONS) == []
        recorded = [v for (v,) in connection.execute("SELECT version FROM schema_migrations")]
        assert sorted(recorded) == expected
        have = tables(connection)
    assert {"sessions", "lineage", "forks", "schema_migrations"} <= have
    assert ({"nodes", "leases", "transcripts"} <= have) == (connect.dialect == "postgresql")


def test_a_failing_step_applies_nothing_and_a_later_module_adds_its_own(connect):
    """A module appends its step after the session store's; if one of its statements
    fails, the whole migration is rolled back (no table of any step, no version); fixed,
    it applies. Versions out of order are refused before anything runs."""
    extra = "CREATE TABLE notes (id {identity}, note TEXT NOT NULL)"
    broken = [*SESSION_MIGRATIONS, Migration(7, extra + "; CREATE TABLE broken (")]
    with connect() as connection:
        with pytest.raises((sqlite3.Error, psycopg.Error)):
            apply_migrations(connection, connect.dialect, broken)
        assert not tables(connection) & {"sessions", "notes", "schema_migrations"}
        fixed = [*SESSION_MIGRATIONS, Migration(7, extra)]
        assert apply_migrations(connection, connect.dialect, fixed) == [1, 7]
        connection.execute("INSERT INTO notes (note) VALUES ('a')")
        connection.execute("INSERT INTO notes (note) VALUES ('b')")
        assert connection.execute("SELECT id FROM notes ORDER BY id").fetchall() == [(1,), (2,)]
        with pytest.raises(ValueError, match="increase"):
            apply_migrations(connection, connect.dialect, [Migration(8, ""), Migration(8, "")])


async def test_a_file_from_before_migrations_is_adopted_with_its_sessions(tmp_path):
    """A SQLite file of the first release (a sessions table only, no model column, no
    ``schema_migrations``) opens with its session, gains the column and the lineage
    tables, and is recorded at version 1."""
    path = tmp_path / "sessions.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(OLD_SESSIONS)
        old.execute(
            "INSERT INTO sessions VALUES ('', 'kept', 'c-1', '/w/kept', NULL, 1, 2, 4, 0, 0, 0)"
        )
    old.close()
    async with open_session_store(path) as store:
        record = await store.load(SessionKey("kept"))
        assert (record.claude_session_id, record.turns, record.model) == ("c-1", 4, None)
        assert await store.lineage() == ([], [])
    with sqlite3.connect(path) as opened:
        assert opened.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
        assert "session_model" in {row[1] for row in opened.execute("PRAGMA table_info(sessions)")}
    opened.close()
