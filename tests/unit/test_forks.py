"""Forks and renames in the actor runtime, on Trio's virtual clock with the scripted fake
client (whose transcripts are cut and copied as the CLI's are by ``resume_at`` and
``fork``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trio

from actors import (
    ActorPolicy,
    ForkPoint,
    SessionKey,
    SessionNotFoundError,
    SessionStartError,
    SupervisorConfig,
    TextDelta,
    Turn,
    TurnCompleted,
    open_supervisor,
)
from actors.testing import ScriptedClientFactory, text_reply


def config(tmp_path: Path, **overrides) -> SupervisorConfig:
    policy = ActorPolicy(
        first_chunk_timeout_s=math.inf,
        stream_idle_timeout_s=math.inf,
        idle_ttl_s=overrides.pop("idle_ttl_s", 900.0),
    )
    return SupervisorConfig(workspace_root=tmp_path, policy=policy, **overrides)


async def ask(sup, key: SessionKey, prompt: str, fork: ForkPoint | None = None):
    """One turn to its end: (its text, its TurnCompleted)."""
    async with sup.open_turn(key, Turn(prompt), fork=fork) as events:
        collected = [event async for event in events]
    done = collected[-1]
    assert isinstance(done, TurnCompleted), collected
    return "".join(e.text for e in collected if isinstance(e, TextDelta)), done


async def test_a_fork_starts_at_its_turn_and_leaves_the_parent_continuable(
    tmp_path, autojump_clock
):
    """A session started with a fork point answers as if the conversation had ended at
    that turn (the fake echoes the turn number), on a new Claude session; the parent's
    conversation goes on as if nothing happened."""
    factory = ScriptedClientFactory()
    async with open_supervisor(config(tmp_path), factory) as sup:
        parent = SessionKey("parent")
        _, first = await ask(sup, parent, "one")
        await ask(sup, parent, "two")
        assert first.assistant_uuid is not None and first.claude_session_id is not None
        point = ForkPoint(first.claude_session_id, first.assistant_uuid)

        text, forked = await ask(sup, SessionKey("branch"), "two again", fork=point)
        assert text == "echo: two again #2"
        assert forked.claude_session_id != first.claude_session_id
        assert (await ask(sup, SessionKey("branch"), "three"))[0] == "echo: three #3"
        assert (await ask(sup, parent, "three"))[0] == "echo: three #3"
        assert sup.stats()["forks"] == 1
        branch = sup.session(SessionKey("branch"))
        assert branch is not None and branch.turns == 2
    spec = factory.specs[1]
    assert (spec.resume, spec.resume_at, spec.fork) == (
        point.claude_session_id,
        point.assistant_uuid,
        True,
    )
    assert factory.transcripts[first.claude_session_id] == ["one", "two", "three"]
    assert factory.transcripts[forked.claude_session_id] == ["one", "two again", "three"]


async def test_a_fork_never_adopts_a_warm_actor_and_later_resumes_its_own_conversation(
    tmp_path, autojump_clock
):
    """A fork needs a CLI that starts resuming, so it does not take a warm-pool actor
    (a plain new session does); once it hibernates, its next CLI resumes the fork's own
    Claude session, no longer the parent's."""
    factory = ScriptedClientFactory()
    cfg = config(tmp_path, warm_pool_size=1, idle_ttl_s=60)
    async with open_supervisor(cfg, factory) as sup:
        await trio.testing.wait_all_tasks_blocked()
        _, first = await ask(sup, SessionKey("parent"), "one")  # adopts the warm actor
        assert factory.specs[0].resume is None
        await trio.testing.wait_all_tasks_blocked()  # the pool refills
        assert sup.stats()["warm_pool_size"] == 1
        warm = sup.stats()["warm_pids"]
        point = ForkPoint(first.claude_session_id, first.assistant_uuid)
        _, forked = await ask(sup, SessionKey("branch"), "two", fork=point)
        assert sup.stats()["warm_pool_size"] == 1 and sup.stats()["warm_pids"] == warm
        assert factory.specs[-1].fork and factory.specs[-1].resume == first.claude_session_id

        await trio.sleep(61)  # both sessions hibernate
        assert not sup.session(SessionKey("branch")).live
        assert (await ask(sup, SessionKey("branch"), "three"))[0] == "echo: three #3"
    resumed = factory.specs[-1]
    assert (resumed.resume, resumed.resume_at, resumed.fork) == (
        forked.claude_session_id,
        None,
        False,
    )


async def test_a_fork_whose_conversation_cannot_be_found_fails_to_start(tmp_path, autojump_clock):
    """A fork point in a conversation the CLI does not have is a start failure for the
    caller, not a silent new conversation."""
    async with open_supervisor(config(tmp_path), ScriptedClientFactory()) as sup:
        with pytest.raises(SessionStartError):
            await ask(sup, SessionKey("branch"), "hi", fork=ForkPoint("gone", "msg-gone"))
        assert sup.session(SessionKey("branch")) is None


async def test_a_renamed_session_keeps_its_conversation_and_frees_its_id(tmp_path, autojump_clock):
    """Renaming an idle session moves its conversation (and live CLI) to the new id; the
    old id then starts a new conversation. A session with a turn under way, or a name
    already in use, is not renamed."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply(f"{p} #{len(h)}", first_delay=5))
    async with open_supervisor(config(tmp_path), factory) as sup:
        old, new = SessionKey("s", "alice"), SessionKey("s-old", "alice")
        await ask(sup, old, "one")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, sup, old, "two")
            await trio.testing.wait_all_tasks_blocked()
            assert not sup.rename_session(old, new)  # busy
        assert sup.rename_session(old, new)
        assert sup.session(old) is None and sup.session(new).turns == 2
        assert (await ask(sup, new, "three"))[0] == "three #3"
        assert (await ask(sup, old, "fresh"))[0] == "fresh #1"
        assert not sup.rename_session(old, new)  # taken
        assert len(list(tmp_path.iterdir())) == 2  # the new "s" has a workspace of its own
        with pytest.raises(SessionNotFoundError):
            sup.rename_session(SessionKey("nobody", "alice"), SessionKey("x", "alice"))
        with pytest.raises(ValueError):
            sup.rename_session(new, SessionKey("s-old", "bob"))
    assert len(factory.clients) == 2  # the renamed session kept its CLI
