"""Leases, hand-off requests and shared transcripts on a real PostgreSQL (a throw-away
server per test run, a fresh database per test; real clock, short leases)."""

from __future__ import annotations

import math

import pytest
import trio

from actors import (
    ActorPolicy,
    CapacityError,
    SessionKey,
    SupervisorConfig,
    open_supervisor,
)
from actors.testing import ScriptedClientFactory
from app.cluster._database import open_database
from app.cluster._handoff import HandOffRequests
from app.cluster._leases import Lease, LeaseHeld, Leases
from app.cluster._ownership import Ownership
from app.cluster._schema import migrate
from app.cluster._transcripts import Transcripts

from .test_supervisor import ask, text_of

KEY = SessionKey("s", "alice")


@pytest.fixture
async def database(database_url):
    async with open_database(database_url) as db:
        await db.run(migrate)
        yield db


async def test_a_lease_has_one_holder_and_a_new_token_for_each_new_owner(database):
    leases = Leases(database)
    first = await leases.acquire(KEY, "a", 30)
    assert (first.node, first.token) == ("a", 1)
    again = await leases.acquire(KEY, "a", 30)
    assert again.token == 1 and again.expires_at >= first.expires_at
    with pytest.raises(LeaseHeld) as held:
        await leases.acquire(KEY, "b", 30)
    assert (held.value.lease.node, held.value.lease.token) == ("a", 1)
    assert await leases.holder(KEY) == held.value.lease
    stale = Lease(KEY, "a", 0, 0.0)
    assert not await leases.release(stale)  # not the current token: nothing happens
    assert await leases.release(first)
    assert await leases.holder(KEY) is None
    second = await leases.acquire(KEY, "b", 30)
    assert (second.node, second.token) == ("b", 2)
    assert not await leases.release(first)  # a's lease is long gone


async def test_the_cluster_view_counts_each_nodes_live_leases(database):
    leases = Leases(database)
    for node in ("a", "b", "c"):
        await leases.register_node(node)
    await leases.acquire(KEY, "a", 30)
    await leases.acquire(SessionKey("t", "alice"), "a", 30)
    released = await leases.acquire(SessionKey("u", "alice"), "b", 30)
    await leases.release(released)
    assert [(node, held) for node, _, held in await leases.cluster()] == [
        ("a", 2),
        ("b", 0),
        ("c", 0),
    ]


async def test_an_expired_lease_goes_to_the_next_node_with_the_next_token(database):
    leases = Leases(database)
    await leases.acquire(KEY, "a", 0.3)
    with trio.fail_after(10):
        while True:
            try:
                taken = await leases.acquire(KEY, "b", 30)
                break
            except LeaseHeld:
                await trio.sleep(0.05)
    assert (taken.node, taken.token) == ("b", 2)
    assert await leases.renew("a", 30) == {}  # a holds nothing any more
    assert await leases.renew("b", 30) == {KEY: 2}


async def test_nodes_acquiring_at_once_get_one_winner_per_session(database):
    leases = Leases(database)
    keys = [SessionKey(f"s{i}", "alice") for i in range(20)]
    won: dict[SessionKey, list[str]] = {key: [] for key in keys}

    async def take(node: str, key: SessionKey) -> None:
        try:
            await leases.acquire(key, node, 30)
            won[key].append(node)
        except LeaseHeld:
            pass

    async with trio.open_nursery() as nursery:
        for key in keys:
            for node in ("a", "b", "c"):
                nursery.start_soon(take, node, key)
    assert all(len(nodes) == 1 for nodes in won.values()), won
    held = [len(await leases.renew(node, 30)) for node in "abc"]
    assert sum(held) == len(keys)


async def test_hand_off_requests_reach_the_node_named(database, database_url):
    a = HandOffRequests(database_url, "a", database)
    b = HandOffRequests(database_url, "b", database)
    heard: dict[str, list[SessionKey]] = {"a": [], "b": []}
    got = trio.Event()

    def on_request(node: str):
        def hear(key: SessionKey) -> None:
            heard[node].append(key)
            got.set()

        return hear

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(a.listen, on_request("a"))
            await nursery.start(b.listen, on_request("b"))
            await b.ask(Lease(KEY, "a", 1, 0.0))
            await got.wait()
            nursery.cancel_scope.cancel()
    assert heard == {"a": [KEY], "b": []}
    assert (a.received, b.sent) == (1, 1)


def supervisor_config(tmp_path, name: str) -> SupervisorConfig:
    policy = ActorPolicy(first_chunk_timeout_s=math.inf, stream_idle_timeout_s=math.inf)
    return SupervisorConfig(workspace_root=tmp_path / name, policy=policy, warm_pool_size=0)


async def test_a_session_moves_to_the_node_that_claims_it(database, tmp_path):
    """Two nodes' supervisors over one lease table: a turn on the second node asks the
    first to hand the session over, which it does once its turn is over; the second
    then drives it. A node that does not answer keeps it until ``claim_timeout_s``."""
    leases = Leases(database)
    factory = ScriptedClientFactory()
    nodes: dict[str, Ownership] = {}

    async def ask_hand_off(lease: Lease) -> None:
        target = nodes.get(lease.node)
        if target is not None:
            nursery.start_soon(target.hand_off, lease.key)

    a = Ownership(leases, "a", ask_hand_off, lease_ttl_s=30, claim_timeout_s=5)
    b = Ownership(leases, "b", ask_hand_off, lease_ttl_s=30, claim_timeout_s=5)
    with trio.fail_after(60):
        async with (
            trio.open_nursery() as nursery,
            open_supervisor(supervisor_config(tmp_path, "a"), factory, ownership=a) as sup_a,
            open_supervisor(supervisor_config(tmp_path, "b"), factory, ownership=b) as sup_b,
        ):
            a.attach(sup_a, nursery)
            b.attach(sup_b, nursery)
            nodes.update(a=a, b=b)
            assert text_of(await ask(sup_a, KEY, "one")).startswith("echo: one")
            assert a.fence(KEY) == 1 and b.fence(KEY) is None
            await ask(sup_b, KEY, "two")
            assert sup_a.session(KEY) is None and sup_b.session(KEY) is not None
            assert (a.fence(KEY), b.fence(KEY)) == (None, 2)
            assert (a.hand_offs, b.take_overs) == (1, 1)

            del nodes["b"]  # b stops answering: a waits out claim_timeout_s, then 503
            with pytest.raises(CapacityError, match="did not hand it over"):
                await ask(sup_a, KEY, "three")
            nursery.cancel_scope.cancel()


async def test_transcript_entries_are_stored_only_under_the_current_lease(database):
    """A CLI's entries are kept (once per uuid, in order) while its node holds the
    session's lease with the token it knows; after another node takes the session, the
    first node's late entries are refused."""
    leases = Leases(database)
    held: dict[str, int | None] = {"a": None, "b": None}
    a = Transcripts(database, "a", lambda key: held["a"])
    b = Transcripts(database, "b", lambda key: held["b"])
    sdk_key = {"project_key": "-work-a", "session_id": "c1"}
    held["a"] = (await leases.acquire(KEY, "a", 0.3)).token
    store_a = a.for_cli(lambda: KEY)
    await store_a.append(sdk_key, [{"uuid": "u1", "type": "user"}, {"type": "title"}])
    await store_a.append(sdk_key, [{"uuid": "u1", "type": "user"}, {"uuid": "u2"}])
    assert await b.for_cli(lambda: KEY).load({**sdk_key, "project_key": "-elsewhere"}) == [
        {"uuid": "u1", "type": "user"},
        {"type": "title"},
        {"uuid": "u2"},
    ]
    await trio.sleep(0.4)
    held["b"] = (await leases.acquire(KEY, "b", 30)).token
    await store_a.append(sdk_key, [{"uuid": "late"}])  # a still thinks it holds token 1
    await b.for_cli(lambda: KEY).append(sdk_key, [{"uuid": "u3"}])
    entries = await b.entries("c1")
    assert entries is not None and [e.get("uuid") for e in entries] == ["u1", None, "u2", "u3"]
    assert a.fenced == 0  # it knew a token: the database refused the write
    assert await a.delete("c1") == 4
    assert await b.entries("c1") is None


async def test_the_store_records_a_session_only_under_its_current_lease(
    database, database_url, tmp_path
):
    """A node's store writes about a session only while that node holds the session's
    lease with the token it knows: after another node took the session over, the first
    node's late record is refused (and counted), and the new owner's stands."""
    from app.sessions._store import open_session_store

    from .test_store import _turn_record

    leases = Leases(database)

    class Fence:
        def __init__(self, node: str) -> None:
            self.node = node
            self.tokens: dict[SessionKey, int] = {}

        def fence(self, key: SessionKey) -> int | None:
            return self.tokens.get(key)

    a, b = Fence("a"), Fence("b")
    async with (
        open_session_store(tmp_path, database_url=database_url, fence=a) as store_a,
        open_session_store(tmp_path, database_url=database_url, fence=b) as store_b,
    ):
        store_a.turn_ended(_turn_record(KEY, 1, tmp_path))  # a holds no lease yet
        assert await store_a.load(KEY) is None and store_a.fenced == 1
        a.tokens[KEY] = (await leases.acquire(KEY, "a", 0.3)).token
        store_a.turn_ended(_turn_record(KEY, 2, tmp_path))
        assert (await store_a.load(KEY)).turns == 2
        await trio.sleep(0.4)
        b.tokens[KEY] = (await leases.acquire(KEY, "b", 30)).token
        store_b.turn_ended(_turn_record(KEY, 3, tmp_path))
        assert (await store_b.load(KEY)).turns == 3
        store_a.turn_ended(_turn_record(KEY, 7, tmp_path))  # a, back from a pause
        assert (await store_a.load(KEY)).turns == 3
        assert (store_a.fenced, store_b.fenced) == (2, 0)


async def test_every_write_about_a_session_needs_its_current_lease(
    database, database_url, tmp_path, caplog
):
    """With a token from before another node took the session, none of a node's writes
    about it applies: lineage mark, fork parent, rename, delete; each is counted, and
    only the first is logged as a warning. The new owner's writes apply."""
    from app.sessions._lineage_index import Mark, Parent
    from app.sessions._store import open_session_store

    from .test_store import _turn_record

    leases = Leases(database)
    stale = (await leases.acquire(KEY, "a", 0.2)).token
    await trio.sleep(0.3)
    current = (await leases.acquire(KEY, "b", 30)).token

    class Fence:
        def __init__(self, node: str, token: int) -> None:
            self.node, self.token = node, token

        def fence(self, key: SessionKey) -> int | None:
            return self.token

    async with (
        open_session_store(tmp_path, database_url=database_url, fence=Fence("a", stale)) as a,
        open_session_store(tmp_path, database_url=database_url, fence=Fence("b", current)) as b,
    ):
        b.turn_ended(_turn_record(KEY, 1, tmp_path))
        b.record_mark("alice", Mark.of("s", 1, "h1", "m1", "c1"))
        b.record_parent("alice", "s", Parent("p", 1))
        assert (await b.load(KEY)).turns == 1
        before = await b.lineage("alice")
        a.record_mark("alice", Mark.of("s", 2, "h2", "m2", "c1"))
        a.record_parent("alice", "s", Parent("other", 3))
        a.rename_session("alice", "s", "moved")
        await a.delete(KEY)
        assert await a.lineage("alice") == before
        assert (await a.load(KEY)).turns == 1
        assert (a.fenced, b.fenced, a.errors) == (4, 0, 0)
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "lease" in r.message]
    assert len(warnings) == 1


async def test_nodes_starting_at_once_apply_each_migration_once(database_url):
    """Three nodes migrating one new database at once: every step is applied once (the
    advisory lock), and a node starting later has nothing to apply."""
    import psycopg

    from app.cluster._schema import MIGRATIONS

    def migrate_once() -> list[int]:
        with psycopg.connect(database_url) as conn:
            return migrate(conn)

    applied: list[list[int]] = []

    async def start() -> None:
        applied.append(await trio.to_thread.run_sync(migrate_once))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(start)
    assert sorted(applied) == [[], [], [step.version for step in MIGRATIONS]]
    assert await trio.to_thread.run_sync(migrate_once) == []
