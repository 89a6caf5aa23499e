"""A supervisor in a cluster: each session's turns claim it first, and a session can be
handed off to another node (on Trio's virtual clock with the scripted fake client)."""

from __future__ import annotations

import pytest
import trio

from actors import (
    CapacityError,
    Observer,
    SessionKey,
    SessionRecord,
    TurnCompleted,
    open_supervisor,
)
from actors.testing import ScriptedClientFactory, text_reply

from .test_supervisor import ask, config, text_of


class Ownership:
    """Records claims; refuses the keys in ``refused`` as a node that is not handed them."""

    def __init__(self) -> None:
        self.claims: list[SessionKey] = []
        self.refused: set[SessionKey] = set()

    async def claim(self, key: SessionKey) -> None:
        await trio.sleep(0.5)  # a database round trip
        self.claims.append(key)
        if key in self.refused:
            raise CapacityError("another node drives this session", retry_after_s=2)


class Forgotten(Observer):
    def __init__(self) -> None:
        self.keys: list[SessionKey] = []

    def session_forgotten(self, key: SessionKey) -> None:
        self.keys.append(key)


async def test_every_turn_of_a_session_claims_it_first(tmp_path, autojump_clock):
    """A session's turns claim it before they run (one-turn sessions belong to no one
    else, and claim nothing); a refused claim refuses the turn, and nothing starts."""
    ownership = Ownership()
    factory = ScriptedClientFactory()
    a, b = SessionKey("a"), SessionKey("b")
    ownership.refused.add(b)
    async with open_supervisor(config(tmp_path), factory, ownership=ownership) as sup:
        assert text_of(await ask(sup, a, "one")).startswith("echo: one")
        assert text_of(await ask(sup, a, "two")).startswith("echo: two")
        await ask(sup, None, "once")
        with pytest.raises(CapacityError, match="another node"):
            await ask(sup, b, "refused")
        assert sup.session(b) is None
    assert ownership.claims == [a, a, b]
    assert len(factory.clients) == 2  # a's CLI and the one-turn session's


async def test_hand_off_waits_for_the_turn_then_stops_the_cli_keeping_the_session(
    tmp_path, autojump_clock
):
    """``hand_off`` lets the running turn (and the one queued behind it) finish, then
    closes the CLI and unregisters the session without forgetting it: no observer is
    told, the workspace stays, and a later turn here resumes the conversation from the
    directory's record."""
    factory = ScriptedClientFactory(
        script=lambda prompt, history: text_reply(prompt, first_delay=10)
    )
    forgotten = Forgotten()
    key = SessionKey("s")
    records: dict[SessionKey, SessionRecord] = {}

    class Directory:
        async def load(self, wanted: SessionKey) -> SessionRecord | None:
            return records.get(wanted)

    cfg = config(tmp_path)
    async with open_supervisor(cfg, factory, directory=Directory()) as sup:
        sup.add_observer(forgotten)
        outcomes: list[object] = []

        async def turn(prompt: str) -> None:
            outcomes.append((await ask(sup, key, prompt))[-1])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(turn, "first")
            await trio.sleep(1)
            nursery.start_soon(turn, "second")
            await trio.sleep(1)
            actor = sup._children.registered[key]
            assert await sup.hand_off(key)
            finished = trio.current_time()
        records[key] = actor.record()  # as a store would have it
        workspace = actor.cwd
        assert [type(o) for o in outcomes] == [TurnCompleted, TurnCompleted]
        assert finished >= 20  # both turns ran to their end first
        assert sup.session(key) is None
        assert factory.live == 0
        assert workspace.is_dir()
        assert forgotten.keys == []
        assert not await sup.hand_off(key)  # nothing left to hand off

        assert text_of(await ask(sup, key, "third")) == "third"
    assert factory.specs[1].resume == factory.clients[0].claude_session_id
    assert factory.specs[1].cwd == workspace
    assert factory.clients[1].prompts == ["first", "second", "third"]


async def test_a_hibernated_session_is_handed_off_without_starting_a_cli(tmp_path, autojump_clock):
    """A hibernated session is handed off at once: no CLI is started for it, and it is
    not forgotten."""
    factory = ScriptedClientFactory()
    forgotten = Forgotten()
    key = SessionKey("s")
    async with open_supervisor(config(tmp_path, idle_ttl_s=60), factory) as sup:
        sup.add_observer(forgotten)
        await ask(sup, key, "one")
        await trio.sleep(61)
        assert not sup.session(key).live
        assert await sup.hand_off(key)
        assert sup.session(key) is None
    assert len(factory.clients) == 1
    assert forgotten.keys == []
