"""Guarantees of the actor runtime, on Trio's virtual clock with a scripted fake client."""

from __future__ import annotations

import contextlib
import contextvars
import gc
import math
import re
import weakref
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from actors import (
    ActorPolicy,
    CapacityError,
    MailboxFullError,
    PrincipalLimitError,
    SessionKey,
    SessionStartError,
    SupervisorConfig,
    TextDelta,
    Turn,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    open_supervisor,
    workspace_name,
)
from actors.testing import ScriptedClientFactory, Step, text_reply

POLICY_FIELDS = set(ActorPolicy.__dataclass_fields__)


def config(tmp_path: Path, **overrides) -> SupervisorConfig:
    """A SupervisorConfig; policy fields (e.g. idle_ttl_s) may be given flat."""
    # Scripts here take their time; the timeouts have tests of their own.
    policy = {"first_chunk_timeout_s": math.inf, "stream_idle_timeout_s": math.inf}
    policy |= {k: overrides.pop(k) for k in list(overrides) if k in POLICY_FIELDS}
    return SupervisorConfig(workspace_root=tmp_path, policy=ActorPolicy(**policy), **overrides)


async def ask(sup, key: SessionKey | None, prompt: str) -> list:
    """Run one turn to its end and return all its events."""
    async with sup.open_turn(key, Turn(prompt)) as events:
        return [event async for event in events]


def text_of(events: Sequence) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def slow_script(seconds: float):
    """Every answer starts ``seconds`` after its query."""
    return lambda prompt, history: text_reply(f"{prompt} done", first_delay=seconds)


async def test_turns_of_one_session_run_in_arrival_order(tmp_path, autojump_clock):
    """Turns sent at once to one session run one after another, in the order sent."""
    factory = ScriptedClientFactory(script=slow_script(10))
    finished: list[tuple[str, float]] = []
    async with open_supervisor(config(tmp_path), factory) as sup:
        key = SessionKey("s1")
        await ask(sup, key, "warm-up")  # the actor exists, so arrival order is send order
        t0 = trio.current_time()

        async def one(prompt: str) -> None:
            events = await ask(sup, key, prompt)
            finished.append((text_of(events), trio.current_time() - t0))

        async with trio.open_nursery() as nursery:
            for prompt in ("a", "b", "c"):
                nursery.start_soon(one, prompt)
                await trio.testing.wait_all_tasks_blocked()
    assert finished == [("a done", 10), ("b done", 20), ("c done", 30)]
    assert factory.clients[0].prompts == ["warm-up", "a", "b", "c"]


async def test_slow_session_does_not_delay_other_sessions(tmp_path, autojump_clock):
    """A session busy for 100 s does not delay another session's 1 s turn."""

    def script(prompt, history):
        return text_reply(prompt, first_delay=100 if prompt == "slow" else 1)

    done: dict[str, float] = {}
    async with open_supervisor(config(tmp_path), ScriptedClientFactory(script=script)) as sup:
        t0 = trio.current_time()

        async def one(session: str, prompt: str) -> None:
            await ask(sup, SessionKey(session), prompt)
            done[prompt] = trio.current_time() - t0

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "a", "slow")
            nursery.start_soon(one, "b", "fast")
    assert done == {"fast": 1, "slow": 100}


async def test_idle_session_hibernates_exactly_after_ttl_and_resumes(tmp_path, autojump_clock):
    """A session with no turn for idle_ttl_s closes its client at that instant but is
    kept; its next turn opens a client that resumes the same conversation."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path, idle_ttl_s=60), factory) as sup:
        key = SessionKey("s1")
        await ask(sup, key, "hi")
        t_idle = trio.current_time()
        await trio.sleep(59.999)
        assert sup.session(key).live
        assert factory.live == 1
        await trio.sleep_until(t_idle + 60)
        await trio.testing.wait_all_tasks_blocked()
        assert factory.live == 0
        info = sup.session(key)
        assert not info.live
        assert info.state == "idle"
        assert info.claude_session_id == factory.clients[0].claude_session_id
        events = await ask(sup, key, "again")
        assert text_of(events) == "echo: again #2"
        assert factory.specs[1].resume == factory.clients[0].claude_session_id
        assert factory.specs[1].cwd == factory.specs[0].cwd


def actor_tasks() -> int:
    """How many session actors have a task now (the supervisor's ``_supervise``)."""

    def count(task: trio.lowlevel.Task) -> int:
        own = task.coro.cr_code.co_name == "_supervise"
        return own + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


async def test_a_hibernated_session_keeps_no_task_until_its_next_turn(tmp_path, autojump_clock):
    """Hibernated with no turn queued, a session's actor task ends (each would keep its
    frames, mailbox wait and timer for as long as the session is remembered); the
    session stays, listeners included, and its next turn runs the actor again."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path, idle_ttl_s=60), factory) as sup:
        key = SessionKey("s1")
        await ask(sup, key, "hi")
        assert actor_tasks() == 1
        await trio.sleep(61)
        assert actor_tasks() == 0
        assert not sup.session(key).live
        with sup.listen(key) as heard:
            events = await ask(sup, key, "again")
            assert text_of(events) == "echo: again #2"
            assert factory.specs[1].resume == factory.clients[0].claude_session_id
            assert actor_tasks() == 1
            assert [type(e) for e in (heard.receive_nowait(), heard.receive_nowait())] == [
                TurnStarted,
                TextDelta,
            ]
        await trio.sleep(61)
        assert actor_tasks() == 0
        assert sup.stats()["hibernated_sessions"] == 1
        async with sup.open_turn(key, Turn("never mind")):
            pass  # its caller gone before the actor ran: no CLI is started for it
        await trio.testing.wait_all_tasks_blocked()
        assert (actor_tasks(), len(factory.specs)) == (0, 2)


async def test_retention_stays_exact_and_bounded_through_many_hibernations(
    tmp_path, autojump_clock
):
    """Each hibernation times the session's retention anew (stale timings are dropped
    as they pile up, so they stay bounded): after many, the session is still forgotten
    exactly retention_s after its last turn."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path, idle_ttl_s=1, retention_s=1000), factory) as sup:
        key = SessionKey("s1")
        for _ in range(100):  # more timings than the bound allows for one session
            await ask(sup, key, "hi")
            await trio.sleep(2)  # hibernated, dormant
        assert len(sup._children._retention) <= 2 * len(sup.sessions()) + 65  # (a private bound)
        await ask(sup, key, "last")
        t_last = trio.current_time()
        await trio.sleep_until(t_last + 999.999)
        assert sup.session(key) is not None
        await trio.sleep_until(t_last + 1000)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.session(key) is None


async def test_a_dormant_session_can_be_closed_or_handed_off(tmp_path, autojump_clock):
    """Closing a session that has no task removes it and its workspace and ends its
    listeners; handing one off removes it and keeps its workspace; at shutdown the
    listeners of those left end too."""
    factory = ScriptedClientFactory()
    keys = [SessionKey(name) for name in ("closed", "handed", "kept")]
    with contextlib.ExitStack() as listening:
        async with open_supervisor(config(tmp_path, idle_ttl_s=60), factory) as sup:
            for key in keys:
                await ask(sup, key, "hi")
            await trio.sleep(61)
            assert actor_tasks() == 0
            closed, handed, kept = (factory.specs[n].cwd for n in range(3))
            with sup.listen(keys[0]) as heard:
                info = await sup.close_session(keys[0])
                assert [event async for event in heard] == []  # the channel ended
            assert info.claude_session_id == factory.clients[0].claude_session_id
            assert sup.session(keys[0]) is None and not closed.exists()
            assert await sup.hand_off(keys[1])
            assert sup.session(keys[1]) is None and handed.exists()
            heard_last = listening.enter_context(sup.listen(keys[2]))
        assert [event async for event in heard_last] == []
    assert kept.exists()


async def test_turns_keep_an_idle_session_alive(tmp_path, autojump_clock):
    """The idle deadline is measured from the end of the latest turn."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path, idle_ttl_s=60), factory) as sup:
        key = SessionKey("s1")
        for n in range(1, 4):
            events = await ask(sup, key, "hi")
            assert text_of(events) == f"echo: hi #{n}"
            await trio.sleep(50)
        assert len(factory.clients) == 1


async def test_live_slots_go_to_new_sessions_by_hibernating_the_least_recently_used(
    tmp_path, autojump_clock
):
    """With max_live_sessions CLIs running, a new session hibernates the least recently
    used idle session; the hibernated one resumes later, its conversation intact."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path, max_live_sessions=2), factory) as sup:
        for session in ("a", "b"):
            await ask(sup, SessionKey(session), "hi")
            await trio.sleep(10)
        await ask(sup, SessionKey("a"), "a again")  # now "b" is the least recently used
        await ask(sup, SessionKey("c"), "hi")
        assert factory.live == 2
        assert [sup.session(SessionKey(s)).live for s in "abc"] == [True, False, True]
        # "b" wakes by hibernating "a" (now least recently used), and continues.
        assert text_of(await ask(sup, SessionKey("b"), "back")) == "echo: back #2"
        assert [sup.session(SessionKey(s)).live for s in "abc"] == [False, True, True]
        assert factory.live == 2


async def test_new_session_is_refused_when_every_live_session_is_busy(tmp_path, autojump_clock):
    """If no live session is idle, a session needing a CLI is refused with CapacityError
    (nothing is evicted mid-turn), and so is any session beyond max_sessions."""
    factory = ScriptedClientFactory(script=slow_script(100))
    async with open_supervisor(config(tmp_path, max_live_sessions=1), factory) as sup:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, sup, SessionKey("busy"), "long")
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(CapacityError) as caught:
                await ask(sup, SessionKey("new"), "hi")
            assert caught.value.retry_after_s > 0
        assert sup.session(SessionKey("new")) is None
    async with open_supervisor(config(tmp_path, max_sessions=1), factory) as sup:
        await ask(sup, SessionKey("one"), "hi")
        with pytest.raises(CapacityError):
            await ask(sup, SessionKey("two"), "hi")


async def test_key_holding_its_live_share_is_refused_while_another_key_is_served(
    tmp_path, autojump_clock
):
    """A key whose share of live CLIs is all busy gets PrincipalLimitError (429) with a
    Retry-After at once, for a new session and for waking a hibernated one, although
    live slots are free; another key still gets a session on a free slot."""
    factory = ScriptedClientFactory(script=slow_script(100))
    limits = config(tmp_path, max_live_sessions=4, max_live_sessions_per_principal=2, idle_ttl_s=50)
    async with open_supervisor(limits, factory) as sup, trio.open_nursery() as nursery:
        await ask(sup, SessionKey("a-old", "alice"), "hi")  # 100 s
        await trio.sleep(51)  # a-old hibernates (after 50 s idle)
        assert not sup.session(SessionKey("a-old", "alice")).live
        t0 = trio.current_time()
        for session in ("a1", "a2"):
            nursery.start_soon(ask, sup, SessionKey(session, "alice"), "long")
        await trio.testing.wait_all_tasks_blocked()
        for session in ("a3", "a-old"):
            with pytest.raises(PrincipalLimitError) as caught:
                await ask(sup, SessionKey(session, "alice"), "one more")
            assert caught.value.retry_after_s > 0
        assert trio.current_time() == t0  # refused at once, not after waiting
        assert sup.session(SessionKey("a3", "alice")) is None
        assert text_of(await ask(sup, SessionKey("b1", "bob"), "hi")) == "hi done"
        assert trio.current_time() - t0 == 100
        assert factory.live == 3
        nursery.cancel_scope.cancel()


async def test_key_at_its_share_hibernates_its_own_idle_session_not_another_keys(
    tmp_path, autojump_clock
):
    """A key at its share that needs another live CLI hibernates its own least recently
    used idle session, even when another key's idle session is older; the hibernated
    one wakes later the same way, its conversation intact."""
    factory = ScriptedClientFactory()
    limits = config(tmp_path, max_live_sessions=3, max_live_sessions_per_principal=2)
    async with open_supervisor(limits, factory) as sup:
        for key in (SessionKey("b1", "bob"), SessionKey("a1", "alice"), SessionKey("a2", "alice")):
            await ask(sup, key, "hi")
            await trio.sleep(10)
        await ask(sup, SessionKey("a3", "alice"), "hi")
        live = {i.session_id for i in sup.sessions() if i.live}
        assert live == {"b1", "a2", "a3"}
        assert text_of(await ask(sup, SessionKey("a1", "alice"), "back")) == "echo: back #2"
        live = {i.session_id for i in sup.sessions() if i.live}
        assert live == {"b1", "a3", "a1"}
        assert factory.live == 3


async def test_adopting_a_warm_actor_counts_against_the_keys_share(tmp_path, autojump_clock):
    """A warm-pool actor belongs to no key, but adopting one takes a live CLI of the
    adopter's share: a key at its share hibernates its own idle session first."""
    factory = ScriptedClientFactory()
    limits = config(
        tmp_path, max_live_sessions=3, max_live_sessions_per_principal=1, warm_pool_size=1
    )
    async with open_supervisor(limits, factory) as sup:
        await trio.testing.wait_all_tasks_blocked()
        await ask(sup, SessionKey("a1", "alice"), "hi")  # adopts the warm actor
        await trio.testing.wait_all_tasks_blocked()  # a new warm actor starts
        assert sup.stats()["warm_pool_size"] == 1
        await ask(sup, SessionKey("a2", "alice"), "hi")  # adopts it: a1 hibernates
        assert [i.session_id for i in sup.sessions() if i.live] == ["a2"]
        await trio.testing.wait_all_tasks_blocked()
        # Three warm actors were started (two adopted), none for a session of its own.
        assert (len(factory.clients), factory.live) == (3, 2)


async def test_capacity_counts_sessions_still_starting(tmp_path, autojump_clock):
    """Sessions whose CLI is still connecting count against max_sessions."""
    factory = ScriptedClientFactory(connect_delay=5)
    async with (
        open_supervisor(config(tmp_path, max_sessions=1), factory) as sup,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(ask, sup, SessionKey("a"), "hi")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CapacityError):
            await ask(sup, SessionKey("b"), "hi")


async def test_concurrent_first_turns_share_one_client(tmp_path, autojump_clock):
    """Two first turns for one new session start one CLI, not two."""
    factory = ScriptedClientFactory(connect_delay=1)
    async with open_supervisor(config(tmp_path), factory) as sup, trio.open_nursery() as nursery:
        nursery.start_soon(ask, sup, SessionKey("s"), "one")
        nursery.start_soon(ask, sup, SessionKey("s"), "two")
    assert len(factory.clients) == 1
    assert sorted(factory.clients[0].prompts) == ["one", "two"]


async def test_full_mailbox_is_refused(tmp_path, autojump_clock):
    """Beyond mailbox_size waiting turns, a turn is refused, not queued without bound."""
    factory = ScriptedClientFactory(script=slow_script(10))
    async with open_supervisor(config(tmp_path, mailbox_size=1), factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "warm-up")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, sup, key, "running")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, sup, key, "waiting")
            await trio.testing.wait_all_tasks_blocked()
            assert sup.session(key).mailbox_depth == 1
            with pytest.raises(MailboxFullError):
                await ask(sup, key, "one too many")


async def test_caller_leaving_interrupts_the_turn_and_session_stays_usable(
    tmp_path, autojump_clock
):
    """A caller that goes away after the first delta interrupts the CLI, the turn is
    drained, and the next turn answers its own prompt on the same client."""

    def script(prompt, history):
        if prompt == "long":
            return text_reply("x" * 50, chunks=50, chunk_delay=1)
        return text_reply(f"answer to {prompt}")

    factory = ScriptedClientFactory(script=script, interrupt_delay=0.5)
    async with open_supervisor(config(tmp_path), factory) as sup:
        key = SessionKey("s")
        async with sup.open_turn(key, Turn("long")) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    break
        t_left = trio.current_time()
        events = await ask(sup, key, "next")
        assert text_of(events) == "answer to next"
        # The next turn waited only for the interrupted turn to drain.
        assert trio.current_time() - t_left == 0.5
        client = factory.clients[0]
        assert client.interrupts == 1
        assert len(factory.clients) == 1
        assert factory.live == 1


async def test_cancelled_caller_interrupts_the_turn(tmp_path, autojump_clock):
    """Cancelling the caller's task (an HTTP disconnect) interrupts the running turn."""
    factory = ScriptedClientFactory(script=slow_script(1000))
    async with open_supervisor(config(tmp_path), factory) as sup:
        key = SessionKey("s")
        with trio.move_on_after(3):
            await ask(sup, key, "forever")
        await trio.testing.wait_all_tasks_blocked()
        assert factory.clients[0].interrupts == 1
        assert sup.session(key).state == "idle"


async def test_turn_cancelled_before_it_starts_is_skipped(tmp_path, autojump_clock):
    """A waiting turn whose caller left never reaches the CLI."""
    factory = ScriptedClientFactory(script=slow_script(10))
    async with open_supervisor(config(tmp_path), factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "warm-up")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, sup, key, "running")
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(1):
                await ask(sup, key, "abandoned")
        await ask(sup, key, "after")
    assert factory.clients[0].prompts == ["warm-up", "running", "after"]


async def test_event_sequence_of_a_turn(tmp_path, autojump_clock):
    """A turn yields TurnStarted, its deltas, then TurnCompleted with the CLI's usage."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("abcdef", chunks=3))
    async with open_supervisor(config(tmp_path), factory) as sup:
        events = await ask(sup, SessionKey("s"), "hi")
    assert isinstance(events[0], TurnStarted)
    assert [e.text for e in events[1:-1]] == ["ab", "cd", "ef"]
    assert {e.block_index for e in events[1:-1]} == {0}
    done = events[-1]
    assert isinstance(done, TurnCompleted)
    assert done.stop_reason == "end_turn"
    assert done.usage.output_tokens == 3
    assert done.claude_session_id == factory.clients[0].claude_session_id
    assert len({e.turn_id for e in events}) == 1


async def test_one_turn_session_closes_after_its_turn(tmp_path, autojump_clock):
    """A turn without a session runs on its own client, closed (workspace removed) after."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path), factory) as sup:
        events = await ask(sup, None, "once")
        assert text_of(events) == "echo: once #1"
        await trio.testing.wait_all_tasks_blocked()
        assert sup.sessions() == []
        assert factory.live == 0
    assert not factory.specs[0].cwd.exists()


SESSIONS = ("plain", "..", ".", "x:y", "-rf")


async def test_each_session_gets_its_own_safely_named_workspace(tmp_path, autojump_clock):
    """Workspaces are distinct directories under the root, never named by the raw id."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path), factory) as sup:
        for session in SESSIONS:
            await ask(sup, SessionKey(session), "hi")
    cwds = [spec.cwd for spec in factory.specs]
    assert len(set(cwds)) == len(SESSIONS)
    for spec, session in zip(factory.specs, SESSIONS, strict=True):
        assert spec.cwd.parent == tmp_path
        assert spec.cwd.name == workspace_name(SessionKey(session))
        assert re.fullmatch(r"s-[0-9a-f]{32}", spec.cwd.name)
        assert spec.cwd.is_dir()


async def test_cli_death_fails_the_turn_and_the_session_resumes_on_a_new_cli(
    tmp_path, autojump_clock
):
    """When the CLI dies mid-turn the turn fails with cli_error (never re-run), the actor
    restarts its CLI at once, resuming, and the next turn continues the conversation."""
    factory = ScriptedClientFactory(script=slow_script(10))
    async with open_supervisor(config(tmp_path), factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "first")
        async with trio.open_nursery() as nursery:
            result: list = []

            async def run() -> None:
                result.extend(await ask(sup, key, "doomed"))

            nursery.start_soon(run)
            await trio.sleep(5)
            factory.clients[0].break_()
        assert isinstance(result[-1], TurnFailed)
        assert result[-1].reason == "cli_error"
        await trio.testing.wait_all_tasks_blocked()
        assert factory.live == 1
        assert sup.session(key).restarts == 1
        events = await ask(sup, key, "next")
        assert text_of(events) == "next done"
        assert factory.clients[1].prompts == ["first", "doomed", "next"]
        assert factory.specs[1].resume == factory.clients[0].claude_session_id


async def test_cli_dead_between_turns_is_restarted_at_once(tmp_path, autojump_clock):
    """A CLI that dies while its session is idle is replaced right away (resuming), and
    the next turn runs normally on the new one."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path), factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "one")
        t0 = trio.current_time()
        factory.clients[0].break_()
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == t0
        assert len(factory.clients) == 2
        assert factory.live == 1
        assert sup.session(key).restarts == 1
        events = await ask(sup, key, "two")
        assert text_of(events) == "echo: two #2"
        assert len(factory.clients) == 2


async def test_start_failure_is_reported_and_not_registered(tmp_path, autojump_clock):
    """A CLI that cannot start gives SessionStartError and leaves no session behind."""
    factory = ScriptedClientFactory(fail_connect=True)
    async with open_supervisor(config(tmp_path), factory) as sup:
        with pytest.raises(SessionStartError):
            await ask(sup, SessionKey("s"), "hi")
        assert sup.sessions() == []


async def test_shutdown_fails_running_turns_and_closes_every_client(tmp_path, autojump_clock):
    """Leaving open_supervisor ends running turns with session_closed and closes every
    client before it returns."""
    factory = ScriptedClientFactory(script=slow_script(math.inf))
    results: list = []

    async def run(sup, session: str) -> None:
        results.append(await ask(sup, SessionKey(session), "hi"))

    with trio.fail_after(10):
        async with trio.open_nursery() as callers:
            async with open_supervisor(config(tmp_path), factory) as sup:
                for session in ("a", "b"):
                    callers.start_soon(run, sup, session)
                await trio.sleep(1)
                assert factory.live == 2
            assert factory.live == 0
    assert [events[-1].reason for events in results] == ["session_closed"] * 2


async def test_interrupted_turn_that_never_ends_gets_its_cli_killed_and_replaced(
    tmp_path, autojump_clock
):
    """If the CLI does not end an interrupted turn within interrupt_drain_s, it is killed
    at that deadline (not left running) and replaced by a resuming one."""

    def stall(prompt, history):
        first, *_, result = text_reply("x")
        return [first, Step(math.inf, result)]

    factory = ScriptedClientFactory(script=stall, interrupt_delay=math.inf)
    async with open_supervisor(config(tmp_path, interrupt_drain_s=7), factory) as sup:
        key = SessionKey("s")
        with trio.move_on_after(1):
            await ask(sup, key, "hi")
        t_cancel = trio.current_time()
        await trio.sleep_until(t_cancel + 6.999)
        assert not factory.clients[0].aborted
        await trio.sleep_until(t_cancel + 7)
        await trio.testing.wait_all_tasks_blocked()
        assert factory.clients[0].aborted
        assert len(factory.clients) == 2
        assert factory.live == 1
        assert sup.session(key).restarts == 1


async def test_at_most_max_concurrent_starts_clis_start_at_once(tmp_path, autojump_clock):
    """Five new sessions at once, two starts at a time, each start 1 s: the CLIs are
    connected in waves of two (at 1, 2 and 3 s), never three at once, and every
    session is answered."""
    factory = ScriptedClientFactory(connect_delay=1)
    answered: list[tuple[str, float]] = []
    async with open_supervisor(config(tmp_path, max_concurrent_starts=2), factory) as sup:

        async def one(name: str) -> None:
            events = await ask(sup, SessionKey(name), name)
            answered.append((text_of(events), trio.current_time()))

        async with trio.open_nursery() as nursery:
            for name in "abcde":
                nursery.start_soon(one, name)
    assert sorted(t for _, t in answered) == [1, 1, 2, 2, 3]
    assert sorted(text for text, _ in answered) == [f"echo: {n} #1" for n in "abcde"]


caller_var: contextvars.ContextVar[object] = contextvars.ContextVar("caller_var", default=None)


async def test_a_session_keeps_nothing_of_the_caller_that_started_it(tmp_path, autojump_clock):
    """An actor runs in a copy of the supervisor's context, not of the caller's that
    started it: what a request's context holds (the request, its id for log lines)
    is neither seen by the session nor kept alive for the session's life."""
    factory = ScriptedClientFactory()
    seen: list[object] = []

    def recording_factory(spec):  # entered in the actor's task
        seen.append(caller_var.get())
        return factory(spec)

    class Request:
        pass

    refs: list[weakref.ref[Request]] = []

    async def caller(sup, session: str) -> None:
        request = Request()
        refs.append(weakref.ref(request))
        caller_var.set(request)
        await ask(sup, SessionKey(session), "hi")

    async with open_supervisor(config(tmp_path, idle_ttl_s=60), recording_factory) as sup:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller, sup, "s1")
        await trio.sleep(61)  # hibernated: the actor waits for its next turn
        assert not sup.session(SessionKey("s1")).live
        gc.collect()
        assert seen == [None]
        assert [ref() for ref in refs] == [None]
