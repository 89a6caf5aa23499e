"""``Supervisor.wait_for_session``: waiting for a session to exist instead of polling,
on Trio's virtual clock with the scripted fake client."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trio

from actors import (
    ActorPolicy,
    SessionKey,
    SupervisorConfig,
    Turn,
    TurnCompleted,
    TurnStarted,
    open_supervisor,
)
from actors.testing import ScriptedClientFactory


def config(tmp_path: Path, **overrides) -> SupervisorConfig:
    policy = ActorPolicy(first_chunk_timeout_s=math.inf, stream_idle_timeout_s=math.inf)
    return SupervisorConfig(workspace_root=tmp_path, policy=policy, **overrides)


async def ask(sup, key: SessionKey, prompt: str) -> list:
    async with sup.open_turn(key, Turn(prompt)) as events:
        return [event async for event in events]


async def test_wait_for_session_returns_at_once_for_a_live_session(tmp_path, autojump_clock):
    """For a session that exists, waiting takes no time and the session can be listened
    to right away."""
    key = SessionKey("here")
    async with open_supervisor(config(tmp_path), ScriptedClientFactory()) as sup:
        await ask(sup, key, "hi")
        t0 = trio.current_time()
        with trio.fail_after(1):
            await sup.wait_for_session(key)
        assert trio.current_time() == t0
        with sup.listen(key):
            pass


@pytest.mark.parametrize("warm_pool_size", [0, 1], ids=["started", "adopted"])
async def test_waiter_wakes_when_a_turn_starts_the_session_and_hears_it_from_turn_started(
    tmp_path, autojump_clock, warm_pool_size
):
    """A caller waiting for a session wakes when another caller's turn starts it (its
    actor started, or adopted from the warm pool), no later, and a listener it opens at
    once sees that first turn from ``TurnStarted`` to ``TurnCompleted``."""
    key = SessionKey("later", "p1")
    factory = ScriptedClientFactory(connect_delay=2)
    cfg = config(tmp_path, warm_pool_size=warm_pool_size)
    heard: list = []
    async with open_supervisor(cfg, factory) as sup:
        await trio.sleep(5)  # the scenario: the turn comes when the pool is warm
        assert sup.stats()["warm_pool_size"] == warm_pool_size
        t0 = trio.current_time()

        async def wait_and_listen(task_status=trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            await sup.wait_for_session(key)
            woke.append(trio.current_time() - t0)
            with sup.listen(key) as events:  # no checkpoint since the wait returned
                async for event in events:
                    heard.append(event)
                    if isinstance(event, TurnCompleted):
                        return

        woke: list[float] = []
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(wait_and_listen)
                await trio.sleep(3)
                assert woke == []
                asked = await ask(sup, key, "first")
    # A new actor is registered once its client connected (2 s); a warm one at once.
    assert woke == [3 + (2 if warm_pool_size == 0 else 0)]
    assert heard == asked
    assert isinstance(heard[0], TurnStarted)


async def test_cancelled_wait_for_session_leaves_nothing_behind(tmp_path, autojump_clock):
    """A wait cancelled by its caller's deadline ends exactly at the deadline and leaves
    no waiter registered; another key's session (same id, another principal) does not
    wake a waiter, and the session starts and is waited for as usual afterwards."""
    key = SessionKey("s", "p1")
    async with open_supervisor(config(tmp_path), ScriptedClientFactory()) as sup:
        t0 = trio.current_time()
        with trio.move_on_after(5) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask, sup, SessionKey("s", "p2"), "other key")
                await sup.wait_for_session(key)
        assert scope.cancelled_caught
        assert trio.current_time() - t0 == 5
        assert sup._children._waiters == {}  # the private registry of waiters is empty
        await ask(sup, key, "now")
        with trio.fail_after(1):
            await sup.wait_for_session(key)
        assert sup._children._waiters == {}
