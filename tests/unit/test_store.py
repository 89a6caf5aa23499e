"""The session store (on SQLite, and where a test takes ``open_store`` on PostgreSQL
too), and the supervisor resuming sessions it knows."""

from __future__ import annotations

import dataclasses

import trio

from actors import (
    SessionKey,
    SessionRecord,
    SupervisorConfig,
    TextDelta,
    Turn,
    TurnCompleted,
    TurnRecord,
    Usage,
    open_supervisor,
)
from actors.testing import ScriptedClientFactory
from app.sessions._backends import SqliteBackend
from app.sessions._store import open_session_store
from app.sessions._writer import OrderedWriter


async def ask(sup, key, prompt):
    async with sup.open_turn(key, Turn(prompt)) as events:
        return "".join([e.text async for e in events if isinstance(e, TextDelta)])


async def test_a_supervisor_resumes_sessions_a_previous_one_recorded(tmp_path, open_store):
    """Turns are recorded; a new supervisor (a restarted server) on the same store
    resumes a known session in its own workspace with its Claude session id, and its
    conversation goes on. Another principal's same id is not that session."""
    factory = ScriptedClientFactory()
    config = SupervisorConfig(workspace_root=tmp_path / "w", warm_pool_size=1)
    key = SessionKey("kept", "alice")
    async with (
        open_store() as store,
        open_supervisor(config, factory, directory=store) as sup,
    ):
        sup.add_observer(store)
        assert await ask(sup, key, "one") == "echo: one #1"
        assert await ask(sup, key, "two") == "echo: two #2"
        claude_session_id = sup.session(key).claude_session_id
    async with open_store() as store:
        record = await store.load(key)
        assert record is not None
        assert record.claude_session_id == claude_session_id
        assert record.cwd.parent == tmp_path / "w"
        assert record.turns == 2
        first_cwd = (claude_session_id, record.cwd)
        async with open_supervisor(config, factory, directory=store) as sup:
            sup.add_observer(store)
            assert await ask(sup, key, "three") == "echo: three #3"
            resumed = [spec for spec in factory.specs if spec.resume][-1]
            assert (resumed.resume, resumed.cwd) == first_cwd
            assert sup.session(key).turns == 3
            other = SessionKey("kept", "bob")
            assert await ask(sup, other, "hi") == "echo: hi #1"
        assert (await store.load(key)).turns == 3


async def test_a_damaged_database_is_set_aside_not_fatal(tmp_path):
    """An unreadable database file is reported, moved aside and replaced by a new one."""
    path = tmp_path / "s.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    async with open_session_store(path) as store:
        assert await store.load(SessionKey("x")) is None
        assert await store.count() == 0
    assert [p.name.startswith("s.sqlite3.damaged-") for p in tmp_path.iterdir()].count(True) == 1
    assert path in list(tmp_path.iterdir())


async def test_forgotten_sessions_leave_the_store(tmp_path, autojump_clock):
    """A session forgotten after its retention is deleted from the store."""
    from actors import ActorPolicy

    factory = ScriptedClientFactory()
    config = SupervisorConfig(
        workspace_root=tmp_path / "w", policy=ActorPolicy(idle_ttl_s=5, retention_s=50)
    )
    key = SessionKey("brief")
    async with open_session_store(tmp_path / "s.sqlite3") as store:
        async with open_supervisor(config, factory, directory=store) as sup:
            sup.add_observer(store)
            await ask(sup, key, "hi")
            await trio.sleep(1)
            assert await store.load(key) is not None
            await trio.sleep(60)
        assert await store.load(key) is None


def _turn_record(key: SessionKey, turns: int, cwd) -> TurnRecord:
    outcome = TurnCompleted(f"t{turns}", "end_turn", Usage(1, 2), 0.01, "claude-1", 5, "m")
    session = SessionRecord(key, cwd, "claude-1", turns, 1.0, 2.0)
    return TurnRecord(key.session_id, f"t{turns}", outcome, 0.0, 0.0, None, 1.0, session)


async def test_records_of_a_session_apply_in_order_and_a_delete_is_final(tmp_path, open_store):
    """Turn records queued just before a delete never land after it: over many rounds,
    a deleted session's row never comes back, and the last of several records wins."""
    key = SessionKey("ordered", "alice")
    with trio.fail_after(30):
        async with open_store() as store:
            for round_ in range(50):
                for turns in range(1, 4):
                    store.turn_ended(_turn_record(key, turns, tmp_path))
                assert (await store.load(key)).turns == 3, round_
                store.turn_ended(_turn_record(key, 4, tmp_path))
                await store.delete(key)
                assert await store.load(key) is None, round_
            assert store.errors == store.dropped == 0


async def test_a_cancelled_store_still_writes_what_was_queued(tmp_path, open_store):
    """Leaving the store by cancellation (a shutdown) still applies the records queued
    before it, within the drain deadline."""
    key = SessionKey("last-words")
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with open_store() as store:
                for turns in range(1, 6):
                    store.turn_ended(_turn_record(key, turns, tmp_path))
                scope.cancel()
                await trio.sleep_forever()
        async with open_store() as store:
            assert (await store.load(key)).turns == 5


# The sessions table of the first release (before models, lineage and migrations).
OLD_SESSIONS = """
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


async def test_an_older_database_gains_the_session_model_column(tmp_path):
    """A database written before sessions kept their model is migrated on opening (one
    column added, rows kept); the model a session runs is then kept and read back."""
    import sqlite3

    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(OLD_SESSIONS)
        old.execute(
            "INSERT INTO sessions (principal, session_id, claude_session_id, workspace, "
            "created_at, last_active_at, turns) VALUES ('', 'old', 'c-1', ?, 1, 2, 3)",
            (str(tmp_path),),
        )
    old.close()
    key = SessionKey("new", "alice")
    async with open_session_store(path) as store:
        assert (await store.load(SessionKey("old"))).model is None
        record = dataclasses.replace(_turn_record(key, 1, tmp_path).session, model="sonnet")
        turn = dataclasses.replace(_turn_record(key, 1, tmp_path), session=record)
        store.turn_ended(turn)
        assert (await store.load(key)).model == "sonnet"
        assert [r.model for r in await store.records("alice")] == ["sonnet"]


def test_the_sqlite_store_is_write_ahead_logged_and_syncs_at_checkpoints(tmp_path):
    """A commit does not wait for the disk (synchronous=NORMAL, with WAL): a turn's
    records cost ~30 µs each instead of a ~630 µs fsync (docstring of ``_configure``)."""
    from app.sessions._backends import SqliteBackend

    backend = SqliteBackend(tmp_path / "sessions.sqlite3")
    try:
        assert backend.connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert backend.connection.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    finally:
        backend.close()


async def test_writes_queued_together_go_in_one_trip_each_in_its_own_transaction(tmp_path):
    """Operations queued while the writer works are applied in one trip to the worker
    thread, in order, on the real SQLite backend; one that fails (a table that does not
    exist) is counted and fails alone, and a caller waiting for its rows gets them."""
    backend = SqliteBackend(tmp_path / "sessions.sqlite3")
    backend.connection.execute("CREATE TABLE writes (n INTEGER)")
    send, receive = trio.open_memory_channel(100)
    writer = OrderedWriter(backend, send)
    trips = []
    transactions = writer._transactions
    writer._transactions = lambda batch: trips.append(len(batch)) or transactions(batch)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for n in range(10):
                table = "no_such_table" if n == 4 else "writes"
                writer._enqueue(f"INSERT INTO {table} VALUES (?)", n)
            nursery.start_soon(writer.write_in_order, receive, 1.0)
            rows = await writer._run("SELECT n FROM writes ORDER BY rowid")
            send.close()
    backend.close()
    assert rows == [(n,) for n in range(10) if n != 4]
    assert writer.errors == 1
    assert trips == [11], trips  # one at a time, it took 11
