"""The model per turn and the session's system prompt, in the actor runtime: on Trio's
virtual clock with the scripted fake client (which records every ``set_model``)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import trio

from actors import (
    ActorPolicy,
    SessionKey,
    SessionRecord,
    SupervisorConfig,
    Turn,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    open_supervisor,
)
from actors._pool import REFILL_HOLD_OFF_S, RETRY_AFTER_FAILED_START_S
from actors._workspaces import SYSTEM_PROMPT_FILE
from actors.testing import ScriptedClientFactory

POLICY_FIELDS = set(ActorPolicy.__dataclass_fields__)


def config(tmp_path: Path, **overrides) -> SupervisorConfig:
    """A SupervisorConfig; policy fields may be given flat. No warm pool unless asked."""
    policy = {"first_chunk_timeout_s": math.inf, "stream_idle_timeout_s": math.inf}
    policy |= {k: overrides.pop(k) for k in list(overrides) if k in POLICY_FIELDS}
    overrides.setdefault("warm_pool_size", 0)
    return SupervisorConfig(workspace_root=tmp_path, policy=ActorPolicy(**policy), **overrides)


async def run(sup, key, prompt: str, model: str | None = None, system: str | None = None):
    """One turn to its end: all its events."""
    async with sup.open_turn(key, Turn(prompt, model=model, system=system)) as events:
        return [event async for event in events]


def answered_by(events) -> str | None:
    """The model a completed turn names (the one that answered)."""
    assert isinstance(events[-1], TurnCompleted), events[-1]
    return events[-1].model


async def test_a_session_switches_model_once_per_change_not_per_turn(tmp_path, autojump_clock):
    """Turns asking for the model the CLI runs (or for none) send no ``set_model``; each
    change of model sends exactly one, on the same CLI, and takes no time."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path, launch_model="default"), factory) as sup:
        key = SessionKey("s")
        t0 = trio.current_time()
        models = ["default", "sonnet", "sonnet", None, "opus", "opus", "sonnet", None]
        answers = [answered_by(await run(sup, key, f"t{n}", m)) for n, m in enumerate(models)]
        assert trio.current_time() == t0
        assert sup.session(key).model == "sonnet"
    [client] = factory.clients
    assert client.set_model_calls == ["sonnet", "opus", "sonnet"]
    assert answers == [
        "fake-model",
        "sonnet",
        "sonnet",
        "sonnet",
        "opus",
        "opus",
        "sonnet",
        "sonnet",
    ]


async def test_no_switch_when_turns_name_no_model(tmp_path, autojump_clock):
    """Turns without a model run on whatever the session's CLI runs: no ``set_model``."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path), factory) as sup:
        for prompt in ("a", "b", "c"):
            assert answered_by(await run(sup, SessionKey("s"), prompt)) == "fake-model"
        assert sup.session(SessionKey("s")).model is None
    assert factory.clients[0].set_model_calls == []


async def test_a_warm_actor_adopts_the_requested_model(tmp_path, autojump_clock):
    """A new session adopts a warm actor whatever model its first turn asks for: the warm
    CLI (its model set to the launch model while warming up) is switched (no new CLI is
    started for the session) and answers on that model."""
    factory = ScriptedClientFactory(connect_delay=1)
    cfg = config(tmp_path, warm_pool_size=1, launch_model="default")
    async with open_supervisor(cfg, factory) as sup:
        await trio.sleep(1)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.stats()["warm_pool_size"] == 1
        warm = factory.clients[0]
        t0 = trio.current_time()
        events = await run(sup, SessionKey("new"), "hi", "haiku")
        assert trio.current_time() == t0  # no CLI start waited for
        assert answered_by(events) == "haiku"
    assert warm.set_model_calls == ["default", "haiku"]
    assert warm.prompts == ["hi"]


async def test_warm_clis_are_warmed_up_and_switched_to_the_model_sessions_ask_for(
    tmp_path, autojump_clock
):
    """Every warm CLI is warmed up once before it is offered, its model set (to the one
    it was started with while no session has asked for one); once a session has adopted
    one asking for a model, the CLIs started for the pool after that switch to that model
    in advance, so the next new session asking for it sends no ``set_model`` at all."""
    factory = ScriptedClientFactory(connect_delay=1)
    cfg = config(tmp_path, warm_pool_size=1, launch_model="default")
    async with open_supervisor(cfg, factory) as sup:
        await trio.sleep(1)
        await trio.testing.wait_all_tasks_blocked()
        first = factory.clients[0]
        assert (first.warm_ups, first.set_model_calls) == (1, ["default"])  # none asked yet
        assert answered_by(await run(sup, SessionKey("a"), "hi", "haiku")) == "haiku"
        await trio.sleep(1)  # the refill
        await trio.testing.wait_all_tasks_blocked()
        second = factory.clients[1]
        assert (second.warm_ups, second.set_model_calls) == (1, ["haiku"])
        assert second.prompts == []  # nothing entered a conversation
        assert answered_by(await run(sup, SessionKey("b"), "hi", "haiku")) == "haiku"
        assert second.set_model_calls == ["haiku"]  # no switch at the turn
        assert answered_by(await run(sup, SessionKey("b"), "again")) == "haiku"  # stays on it
    assert first.set_model_calls == ["default", "haiku"]  # switched at its adopting turn
    assert second.set_model_calls == ["haiku"]


async def test_warm_up_is_skipped_when_the_policy_says_so(tmp_path, autojump_clock):
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path, warm_pool_size=1, warm_up=False), factory) as sup:
        await trio.testing.wait_all_tasks_blocked()
        assert sup.stats()["warm_pool_size"] == 1
    assert factory.clients[0].warm_ups == 0


async def test_a_warm_cli_that_does_not_switch_in_time_is_never_offered(tmp_path, autojump_clock):
    """A warm CLI that does not answer its model switch within ``prompt_write_s`` is
    closed, never offered to a session, and the pool tries again."""
    factory = ScriptedClientFactory(set_model_delay=math.inf)
    # No launch model known: the first warm CLI sets none, and is offered.
    cfg = config(tmp_path, warm_pool_size=1, prompt_write_s=5)
    async with open_supervisor(cfg, factory) as sup:
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
        events = await run(sup, SessionKey("a"), "hi", "haiku")  # adopted; its switch hangs
        assert isinstance(events[-1], TurnFailed) and trio.current_time() == t0 + 5

        def switching() -> list:  # warm CLIs told to switch to haiku before being offered
            return [c for c in factory.clients if c.warm_ups == 0 and c.set_model_calls]

        # The refill started REFILL_HOLD_OFF_S after the adoption (the turn was not over).
        [warm] = switching()
        await trio.sleep_until(t0 + REFILL_HOLD_OFF_S + 5)
        await trio.testing.wait_all_tasks_blocked()
        assert warm.closed and warm.prompts == []  # given up, never offered
        assert sup.stats()["warm_pool_size"] == 0
        await trio.sleep(RETRY_AFTER_FAILED_START_S)
        await trio.testing.wait_all_tasks_blocked()
        assert len(switching()) == 2 and sup.stats()["warm_pool_size"] == 0


async def test_a_resumed_session_switches_its_new_cli_to_its_model(tmp_path, autojump_clock):
    """After hibernating, a session's next CLI (which resumes the conversation and may
    run any model) is switched to the session's model before its first turn, even when
    that turn names none; a session restored from its record does the same."""
    factory = ScriptedClientFactory()
    cfg = config(tmp_path, idle_ttl_s=60, launch_model="default")
    key = SessionKey("s")
    async with open_supervisor(cfg, factory) as sup:
        await run(sup, key, "a", "opus")
        await trio.sleep(61)
        assert not sup.session(key).live
        assert answered_by(await run(sup, key, "b")) == "opus"
        record = sup._children.registered[key].record()
    assert [c.set_model_calls for c in factory.clients] == [["opus"], ["opus"]]
    assert factory.specs[1].resume == factory.clients[0].claude_session_id
    assert record.model == "opus"

    class Directory:
        async def load(self, wanted: SessionKey) -> SessionRecord | None:
            return record if wanted == key else None

    async with open_supervisor(cfg, factory, directory=Directory()) as sup:
        assert answered_by(await run(sup, key, "c")) == "opus"
    assert factory.clients[2].set_model_calls == ["opus"]
    assert factory.clients[2].prompts == ["a", "b", "c"]


async def test_a_resumed_cli_runs_the_model_named_on_its_command_line(tmp_path, autojump_clock):
    """With a model named on every CLI's command line (``resume_model``), a resumed CLI
    runs it: a session on that model resumes with no ``set_model``; a session on another
    model is switched back to its own before its first turn, as without one."""
    factory = ScriptedClientFactory()
    cfg = config(tmp_path, idle_ttl_s=60, launch_model="sonnet", resume_model="sonnet")
    stays, moved = SessionKey("stays"), SessionKey("moved")
    async with open_supervisor(cfg, factory) as sup:
        await run(sup, stays, "a", "sonnet")
        await run(sup, moved, "a", "opus")
        await trio.sleep(61)
        assert not sup.session(stays).live and not sup.session(moved).live
        await run(sup, stays, "b")
        await run(sup, moved, "b")
        assert (sup.session(stays).model, sup.session(moved).model) == ("sonnet", "opus")
    assert [c.set_model_calls for c in factory.clients] == [[], ["opus"], [], ["opus"]]
    assert [spec.resume for spec in factory.specs[2:]] == [
        client.claude_session_id for client in factory.clients[:2]
    ]


async def test_a_refused_model_fails_the_turn_and_keeps_the_cli(tmp_path, autojump_clock):
    """A model Claude Code refuses fails that turn (``model_refused``, before it starts:
    no prompt is sent); the CLI is kept, still on its model, for the next turn."""
    factory = ScriptedClientFactory(refused_models=frozenset({"claude-forbidden"}))
    async with open_supervisor(config(tmp_path, launch_model="default"), factory) as sup:
        key = SessionKey("s")
        await run(sup, key, "a", "sonnet")
        events = await run(sup, key, "b", "claude-forbidden")
        assert [type(e) for e in events] == [TurnFailed]
        assert events[0].reason == "model_refused"
        assert "claude-forbidden" in events[0].message
        assert answered_by(await run(sup, key, "c")) == "sonnet"
        assert sup.session(key).model == "sonnet"
        assert sup.session(key).restarts == 0
    [client] = factory.clients
    assert client.prompts == ["a", "c"]
    assert client.set_model_calls == ["sonnet", "claude-forbidden"]


async def test_a_cli_that_does_not_switch_model_in_time_is_killed(tmp_path, autojump_clock):
    """A ``set_model`` that gets no answer (a stopped CLI) is given up after exactly
    ``prompt_write_s``: the turn fails (``cli_error``) rather than hangs, the CLI is
    killed and the session goes on with a new one."""
    factory = ScriptedClientFactory()
    cfg = config(tmp_path, prompt_write_s=7, launch_model="default")
    async with open_supervisor(cfg, factory) as sup:
        key = SessionKey("s")
        await run(sup, key, "a")
        factory.clients[0].set_model_delay = math.inf
        t0 = trio.current_time()
        events = await run(sup, key, "b", "opus")
        assert trio.current_time() - t0 == 7
        assert [type(e) for e in events] == [TurnFailed]
        assert events[0].reason == "cli_error"
        assert "did not switch to model 'opus' within 7" in events[0].message
        await trio.testing.wait_all_tasks_blocked()
        assert sup.session(key).restarts == 1
        assert answered_by(await run(sup, key, "c")) == "default"
    assert factory.clients[0].aborted
    assert factory.clients[1].set_model_calls == ["default"]  # a resumed CLI: made sure
    assert factory.clients[0].prompts == factory.clients[1].prompts == ["a", "c"]


async def test_an_opening_turn_with_a_system_prompt_starts_its_own_cli(tmp_path, autojump_clock):
    """A new session whose first turn adds to the system prompt does not adopt a warm
    actor: its own CLI starts with the text in a file of its workspace (only the path is
    an option). The text is fixed by the opening turn: a later turn's system changes
    nothing. The warm actor goes to the next new session without one, with no file."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path, warm_pool_size=1), factory) as sup:
        await trio.testing.wait_all_tasks_blocked()
        warm = factory.clients[0]
        key = SessionKey("s")
        await run(sup, key, "a", system="Answer in French.")
        await run(sup, key, "b", system="Answer in German.")
        assert warm.prompts == []
        await run(sup, SessionKey("plain"), "c")
        assert warm.prompts == ["c"]
    spec = factory.specs[1]
    assert spec.system_prompt_file == spec.cwd / SYSTEM_PROMPT_FILE
    assert factory.clients[1].prompts == ["a", "b"]
    assert factory.specs[0].system_prompt_file is None


def wait_until_gone(path: Path, timeout: float = 10) -> None:
    """Block (in real time) until ``path`` no longer exists; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} was not removed"
        time.sleep(0.01)


async def test_a_hibernated_session_keeps_its_system_prompt_file(tmp_path, autojump_clock):
    """Every later CLI of a session (after hibernating) is given the same file, with the
    opening turn's text; a new session under the same id later, without a system
    prompt, gets none: not a stale file left in a directory its id used before."""
    factory = ScriptedClientFactory()
    cfg = config(tmp_path, idle_ttl_s=60)
    key = SessionKey("s")
    async with open_supervisor(cfg, factory) as sup:
        await run(sup, key, "a", system="Answer in French.")
        await trio.sleep(61)
        await run(sup, key, "b", system="ignored")
        path = factory.specs[1].system_prompt_file
        assert path == factory.specs[0].system_prompt_file
        assert path.read_text() == "Answer in French."
        assert (path.stat().st_mode & 0o777) == 0o600
        await sup.close_session(key)
    # A full workspace is removed in a worker thread, which the virtual clock does not
    # wait for: wait (really) until it is gone before leaving a stale file there.
    await trio.to_thread.run_sync(wait_until_gone, path.parent)
    path.parent.mkdir()
    path.write_text("stale")  # as if a forgotten session had left it behind
    async with open_supervisor(cfg, factory) as sup:
        await run(sup, key, "again")
    assert factory.specs[2].system_prompt_file is None
    assert factory.specs[2].cwd != path.parent


async def test_a_turn_refused_for_its_model_never_started(tmp_path, autojump_clock):
    """Listeners hear nothing of a turn refused for its model: it never started."""
    factory = ScriptedClientFactory(refused_models=frozenset({"claude-forbidden"}))
    async with open_supervisor(config(tmp_path), factory) as sup:
        key = SessionKey("s")
        await run(sup, key, "a")
        with sup.listen(key) as heard:
            await run(sup, key, "b", "claude-forbidden")
            await run(sup, key, "c")
            events = []
            while not isinstance(events[-1:] and events[-1], TurnCompleted):
                events.append(await heard.receive())
    assert sum(isinstance(e, TurnStarted) for e in events) == 1
    assert not any(isinstance(e, TurnFailed) for e in events)
