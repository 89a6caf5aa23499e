"""Supervision guarantees on Trio's virtual clock: timeouts, restarts, hibernation,
warm pool, fan-out, interrupts. Times are asserted exactly."""

from __future__ import annotations

import math

import pytest
import trio

from actors import (
    ActorPolicy,
    Lagged,
    SessionKey,
    SupervisorConfig,
    TextDelta,
    Turn,
    TurnCompleted,
    TurnFailed,
    open_supervisor,
)
from actors._pool import REFILL_HOLD_OFF_S
from actors.testing import AskPermission, ScriptedClientFactory, Step, text_reply


def config(tmp_path, *, warm_pool_size=0, fanout_buffer_size=256, **policy) -> SupervisorConfig:
    return SupervisorConfig(
        workspace_root=tmp_path,
        warm_pool_size=warm_pool_size,
        fanout_buffer_size=fanout_buffer_size,
        policy=ActorPolicy(**policy),
    )


async def ask(sup, key, prompt: str) -> list:
    async with sup.open_turn(key, Turn(prompt)) as events:
        return [event async for event in events]


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def stalls_on(word: str, *, after_first: bool = False):
    """A script that answers normally, except prompts containing ``word``: those get no
    message at all (or, with ``after_first``, only ``message_start``)."""

    def script(prompt, history):
        steps = text_reply(f"echo: {prompt} #{len(history)}")
        if word not in prompt:
            return steps
        first, *_, result = steps
        if after_first:
            return [first, Step(math.inf, result)]
        return [Step(math.inf, result)]

    return script


async def test_first_chunk_timeout_fires_at_its_deadline_and_restarts_the_cli(
    tmp_path, autojump_clock
):
    """No message within first_chunk_timeout_s: the turn fails (timeout) at exactly that
    time, the wedged CLI is killed, and a new CLI resumes the conversation so the next
    turn answers its own prompt."""
    factory = ScriptedClientFactory(script=stalls_on("wedge"))
    async with open_supervisor(config(tmp_path, first_chunk_timeout_s=10), factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "one")
        t0 = trio.current_time()
        events = await ask(sup, key, "wedge")
        assert trio.current_time() - t0 == 10
        assert isinstance(events[-1], TurnFailed)
        assert events[-1].reason == "timeout"
        assert factory.clients[0].aborted
        events = await ask(sup, key, "three")
        assert text_of(events) == "echo: three #3"
        assert factory.specs[1].resume == factory.clients[0].claude_session_id
        info = sup.session(key)
        assert info.restarts == 1
        assert sup.stats()["timeouts"] == {"first_chunk": 1, "stream_idle": 0}


async def test_stream_idle_timeout_fires_after_the_last_message_and_keeps_the_cli(
    tmp_path, autojump_clock
):
    """After a first message, silence for stream_idle_timeout_s fails the turn at exactly
    that time; the CLI is interrupted and drained, not replaced."""
    factory = ScriptedClientFactory(script=stalls_on("stall", after_first=True))
    cfg = config(tmp_path, first_chunk_timeout_s=10, stream_idle_timeout_s=30)
    async with open_supervisor(cfg, factory) as sup:
        key = SessionKey("s")
        t0 = trio.current_time()
        events = await ask(sup, key, "stall")
        assert trio.current_time() - t0 == 30
        assert events[-1].reason == "timeout"
        await trio.testing.wait_all_tasks_blocked()  # the drain follows the reply
        client = factory.clients[0]
        assert client.interrupts == 1
        assert not client.aborted
        assert text_of(await ask(sup, key, "next")) == "echo: next #2"
        assert len(factory.clients) == 1
        assert sup.stats()["timeouts"] == {"first_chunk": 0, "stream_idle": 1}


async def test_stream_idle_timeout_counts_from_the_last_of_many_messages(tmp_path, autojump_clock):
    """A stream that flows for longer than stream_idle_timeout_s (deltas 20 s apart up to
    40 s) and then stalls fails at exactly 30 s after its last message, not after its
    first."""

    def flows_then_stalls(prompt, history):
        *steps, result = text_reply("abc", chunks=3, chunk_delay=20)
        return [*steps, Step(math.inf, result)]

    factory = ScriptedClientFactory(script=flows_then_stalls)
    cfg = config(tmp_path, first_chunk_timeout_s=10, stream_idle_timeout_s=30)
    async with open_supervisor(cfg, factory) as sup:
        t0 = trio.current_time()
        events = await ask(sup, SessionKey("s"), "flow, then stall")
        assert trio.current_time() - t0 == 40 + 30
        assert sup.stats()["timeouts"] == {"first_chunk": 0, "stream_idle": 1}
    assert text_of(events) == "abc"
    assert events[-1].reason == "timeout"


async def test_timeouts_do_not_fire_before_their_deadlines(tmp_path, autojump_clock):
    """A first message just inside first_chunk_timeout_s and deltas just inside
    stream_idle_timeout_s of each other make a normal, complete turn."""
    factory = ScriptedClientFactory(
        script=lambda p, h: text_reply("abc", chunks=3, first_delay=9.999, chunk_delay=29.999)
    )
    cfg = config(tmp_path, first_chunk_timeout_s=10, stream_idle_timeout_s=30)
    async with open_supervisor(cfg, factory) as sup:
        events = await ask(sup, SessionKey("s"), "slow but steady")
    assert isinstance(events[-1], TurnCompleted)
    assert text_of(events) == "abc"


async def test_restart_intensity_closes_a_session_that_keeps_failing(tmp_path, autojump_clock):
    """More than max_restarts CLI failures within restart_window_s close the session with
    a clear error; it is forgotten, and its next turn starts a new conversation."""
    factory = ScriptedClientFactory()
    cfg = config(tmp_path, max_restarts=2, restart_window_s=60)
    async with open_supervisor(cfg, factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "hi")
        for n in range(2):
            factory.clients[-1].break_()
            await ask(sup, key, f"retry {n}")  # dead while idle: restarted, turn runs
        assert sup.session(key).restarts == 2
        factory.clients[-1].break_()
        events = await ask(sup, key, "one failure too many")
        assert isinstance(events[-1], TurnFailed)
        assert events[-1].reason == "session_closed"
        assert "3 times within 60" in events[-1].message
        assert sup.session(key) is None
        assert sup.stats()["sessions_failed"] == 1
        assert text_of(await ask(sup, key, "fresh")) == "echo: fresh #1"


async def test_restarts_spread_over_time_do_not_close_the_session(tmp_path, autojump_clock):
    """Failures further apart than restart_window_s never add up to the intensity limit."""
    factory = ScriptedClientFactory()
    cfg = config(tmp_path, max_restarts=1, restart_window_s=60)
    async with open_supervisor(cfg, factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "hi")
        for n in range(3):
            await trio.sleep(61)
            factory.clients[-1].break_()
            assert text_of(await ask(sup, key, "again")) == f"echo: again #{n + 2}"
        assert sup.session(key).restarts == 3


async def test_conversation_that_cannot_be_resumed_starts_afresh(tmp_path, autojump_clock):
    """If the CLI cannot resume a conversation (its transcript is gone), the session goes
    on with a new one instead of failing every turn, and says so in last_error."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path), factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "one")
        factory.transcripts.clear()
        factory.clients[0].break_()
        assert text_of(await ask(sup, key, "two")) == "echo: two #1"
        info = sup.session(key)
        assert "could not be resumed" in info.last_error
        assert info.restarts == 2  # the failed resume, then the fresh start


async def test_hibernated_session_is_forgotten_after_retention(tmp_path, autojump_clock):
    """A hibernated session is forgotten exactly retention_s after its last turn."""
    factory = ScriptedClientFactory()
    cfg = config(tmp_path, idle_ttl_s=10, retention_s=100)
    async with open_supervisor(cfg, factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "hi")
        t_last = trio.current_time()
        await trio.sleep_until(t_last + 99.999)
        assert sup.session(key) is not None
        assert not sup.session(key).live
        await trio.sleep_until(t_last + 100)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.session(key) is None


async def test_new_session_adopts_a_warm_actor_and_the_pool_refills(tmp_path, autojump_clock):
    """With a warm pool, a new session's first reply does not wait for a CLI start, and
    the pool is refilled in the background."""
    factory = ScriptedClientFactory(connect_delay=2)
    async with open_supervisor(config(tmp_path, warm_pool_size=2), factory) as sup:
        await trio.sleep(2)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.stats()["warm_pool_size"] == 2
        t0 = trio.current_time()
        events = await ask(sup, SessionKey("new"), "hi")
        assert trio.current_time() == t0  # no connect delay paid
        assert text_of(events) == "echo: hi #1"
        assert sup.stats()["warm_pool_size"] == 1
        await trio.sleep(2)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.stats()["warm_pool_size"] == 2
        assert factory.live == 3


async def test_the_pool_refills_once_the_adopting_sessions_first_turn_is_over(
    tmp_path, autojump_clock
):
    """The CLI replacing an adopted one does not start while the adopting session's
    first turn runs (its start-up CPU would slow that turn), only once the turn is over,
    or ``REFILL_HOLD_OFF_S`` after the adoption if the turn lasts longer."""

    def slow(prompt, history):
        *steps, result = text_reply(f"echo: {prompt}")
        return [*steps, Step(0.5 if "short" in prompt else 10, result)]

    factory = ScriptedClientFactory(script=slow)
    async with open_supervisor(config(tmp_path, warm_pool_size=1), factory) as sup:
        await trio.testing.wait_all_tasks_blocked()
        assert len(factory.clients) == 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, sup, SessionKey("a"), "short")
            await trio.sleep(0.4)
            await trio.testing.wait_all_tasks_blocked()
            assert len(factory.clients) == 1  # held off while that turn runs
        await trio.testing.wait_all_tasks_blocked()
        assert len(factory.clients) == 2  # started as it ended
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, sup, SessionKey("b"), "long")
            await trio.sleep(REFILL_HOLD_OFF_S - 0.1)
            await trio.testing.wait_all_tasks_blocked()
            assert len(factory.clients) == 2
            await trio.sleep_until(t0 + REFILL_HOLD_OFF_S)
            await trio.testing.wait_all_tasks_blocked()
            assert len(factory.clients) == 3  # no longer than that, the turn still running
            nursery.cancel_scope.cancel()


async def test_idle_time_counts_from_the_clis_connection(tmp_path, autojump_clock):
    """A CLI is live for ``idle_ttl_s`` after it connects, however long its start took:
    a start slower than the TTL (many CLIs starting at once on a small machine) must not
    close the new CLI the moment it is ready (for a new session, before its first turn
    was handed over, which then started yet another CLI)."""
    factory = ScriptedClientFactory(connect_delay=5)
    async with open_supervisor(config(tmp_path, idle_ttl_s=3), factory) as sup:
        key = SessionKey("slow")
        await ask(sup, key, "hi")  # at t=5
        factory.clients[0].break_()  # its CLI dies at t=5 (idle): restarted, resuming
        t0 = trio.current_time()
        await trio.sleep(5 + 1)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.session(key).live and factory.live == 1  # connected at t0+5
        await trio.sleep_until(t0 + 5 + 3)
        await trio.testing.wait_all_tasks_blocked()
        assert not sup.session(key).live and factory.live == 0
        assert len(factory.clients) == 2


async def test_warm_actors_are_evicted_before_sessions(tmp_path, autojump_clock):
    """When live slots run out, an idle warm actor gives up its slot before any session."""
    factory = ScriptedClientFactory()
    cfg = SupervisorConfig(workspace_root=tmp_path, max_live_sessions=2, warm_pool_size=1)
    async with open_supervisor(cfg, factory) as sup:
        await ask(sup, SessionKey("a"), "hi")  # adopts the warm actor; pool refills
        await trio.testing.wait_all_tasks_blocked()
        assert sup.stats()["warm_pool_size"] == 1
        await ask(sup, SessionKey("b"), "hi")  # adopts the refilled one
        await trio.testing.wait_all_tasks_blocked()
        assert sup.stats()["live_sessions"] == 2
        assert sup.stats()["warm_pool_size"] == 0  # no free slot to refill into
        assert factory.live == 2


async def test_slow_listener_lags_without_slowing_the_turn(tmp_path, autojump_clock):
    """An extra listener that never reads loses events and is told how many; the turn
    and a prompt listener go on at full speed."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x" * 10, chunks=10))
    async with open_supervisor(config(tmp_path, fanout_buffer_size=3), factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "warm-up")
        with sup.listen(key) as slow, sup.listen(key) as prompt:
            seen: list = []
            async with trio.open_nursery() as nursery:

                async def read_all() -> None:
                    async for event in prompt:
                        seen.append(event)
                        if isinstance(event, TurnCompleted):
                            return

                nursery.start_soon(read_all)
                t0 = trio.current_time()
                events = await ask(sup, key, "go")
                assert trio.current_time() == t0
            assert [type(e) for e in seen] == [type(e) for e in events]
            buffered = [slow.receive_nowait() for _ in range(3)]
            assert sup.stats()["listener_drops"] == len(events) - 3
        await ask(sup, key, "again")  # the slow listener left: nothing more is dropped
        assert sup.stats()["listener_drops"] == len(events) - 3
    assert len(buffered) == 3


async def test_lagged_listener_is_told_how_many_events_it_lost(tmp_path, autojump_clock):
    """Once a lagging listener has room again it first gets Lagged(dropped=n)."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("abcd", chunks=4))
    async with open_supervisor(config(tmp_path, fanout_buffer_size=2), factory) as sup:
        key = SessionKey("s")
        await ask(sup, key, "warm-up")
        with sup.listen(key) as listener:
            first = await ask(sup, key, "one")
            kept = [listener.receive_nowait() for _ in range(2)]
            await ask(sup, key, "two")
            notice = listener.receive_nowait()
        assert kept == first[:2]
        assert notice == Lagged(dropped=len(first) - 2)


async def test_interrupt_ends_the_running_turn_and_keeps_the_session(tmp_path, autojump_clock):
    """Supervisor.interrupt stops the running turn; its caller gets TurnFailed
    (interrupted) at once, and the session answers its next turn."""
    factory = ScriptedClientFactory(script=stalls_on("long", after_first=True))
    async with open_supervisor(config(tmp_path, stream_idle_timeout_s=1000), factory) as sup:
        key = SessionKey("s")
        async with trio.open_nursery() as nursery:
            result: list = []

            async def run() -> None:
                result.extend(await ask(sup, key, "long"))

            nursery.start_soon(run)
            await trio.sleep(5)
            t0 = trio.current_time()
            assert sup.interrupt(key) is True
        assert trio.current_time() == t0
        assert result[-1] == TurnFailed(result[-1].turn_id, "interrupted", "interrupted on request")
        assert sup.interrupt(key) is False
        assert text_of(await ask(sup, key, "next")) == "echo: next #2"


async def test_finish_policy_lets_an_abandoned_turn_complete(tmp_path, autojump_clock):
    """With finish_on_disconnect, a caller leaving mid-turn does not interrupt it: the
    turn completes and stays in the conversation."""
    factory = ScriptedClientFactory(
        script=lambda p, h: text_reply(f"{p} #{len(h)}", chunks=5, chunk_delay=1)
    )
    async with open_supervisor(config(tmp_path, finish_on_disconnect=True), factory) as sup:
        key = SessionKey("s")
        with trio.move_on_after(2):
            await ask(sup, key, "left early")
        assert text_of(await ask(sup, key, "next")) == "next #2"
        client = factory.clients[0]
        assert client.interrupts == 0
        assert client.prompts == ["left early", "next"]


async def test_wait_idle_returns_when_running_turns_end(tmp_path, autojump_clock):
    """wait_idle (the shutdown grace) returns exactly when the last running turn ends;
    after close() new turns are refused."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=7))
    async with open_supervisor(config(tmp_path, first_chunk_timeout_s=10), factory) as sup:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, sup, SessionKey("a"), "hi")
            await trio.testing.wait_all_tasks_blocked()
            t0 = trio.current_time()
            sup.close()
            await sup.wait_idle()
            assert trio.current_time() - t0 == 7
        with pytest.raises(Exception, match="shutting down"):
            await ask(sup, SessionKey("b"), "too late")


def asks(prompt, history):
    """Every turn asks to use Write, then answers."""
    first, *rest = text_reply("done")
    return [first, Step(0, AskPermission("Write", {"file_path": "x"})), *rest]


async def test_permission_questions_go_to_listeners_and_are_replayed(tmp_path, autojump_clock):
    """In ask mode a tool question reaches the session's listeners; one connecting late
    gets the pending question replayed; its answer decides; with no listener, or no answer
    within permission_timeout_s, the tool is denied (and the wait is not a stall)."""
    factory = ScriptedClientFactory(script=asks)
    cfg = config(tmp_path, ask_permissions=True, permission_timeout_s=30, stream_idle_timeout_s=10)
    async with open_supervisor(cfg, factory) as sup:
        key = SessionKey("s")
        events = await ask(sup, key, "no one listens")
        outputs = [e for e in events if type(e).__name__ == "ToolResult"]
        assert outputs[0].is_error and "no client" in outputs[0].content
        async with trio.open_nursery() as nursery:
            with sup.listen(key) as early:
                result: list = []

                async def run() -> None:
                    result.extend(await ask(sup, key, "please"))

                nursery.start_soon(run)
                question = await early.receive()
                while type(question).__name__ != "PermissionRequest":
                    question = await early.receive()
            await trio.sleep(20)  # longer than stream_idle_timeout_s: not a stall
            with sup.listen(key) as late:
                replayed = late.receive_nowait()
                assert replayed == question
                assert sup.answer_permission(key, question.request_id, True)
        assert isinstance(result[-1], TurnCompleted)
        assert [e.is_error for e in result if type(e).__name__ == "ToolResult"] == [False]
        assert not sup.answer_permission(key, question.request_id, True)  # answered
        with sup.listen(key):
            t0 = trio.current_time()
            events = await ask(sup, key, "nobody answers")
        assert trio.current_time() - t0 == 30
        denied = [e for e in events if type(e).__name__ == "ToolResult"]
        assert denied[0].is_error and "30" in denied[0].content
