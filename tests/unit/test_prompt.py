"""A user's message is text for Claude Code unless its slash command is allowed."""

from __future__ import annotations

import trio

from actors import ActorPolicy, SessionKey, SupervisorConfig, Turn, TurnCompleted, open_supervisor
from actors._prompt import as_user_text, command_name
from actors.testing import ScriptedClientFactory


def test_a_leading_slash_is_text_by_default():
    """``/init`` and friends reach Claude Code with a leading space (which Claude Code
    reads as text, not a command); anything else is untouched."""
    assert as_user_text("/init") == " /init"
    assert as_user_text("/compact keep the plan") == " /compact keep the plan"
    assert as_user_text("/") == " /"
    assert as_user_text("hello /init") == "hello /init"
    assert as_user_text(" /init") == " /init"


def test_allowed_commands_run():
    """A deployment's ``slash_commands`` pass as commands; others stay text."""
    assert as_user_text("/compact", ["compact"]) == "/compact"
    assert as_user_text("/compact now", ["compact"]) == "/compact now"
    assert as_user_text("/compactor", ["compact"]) == " /compactor"
    assert as_user_text("/init", ["compact"]) == " /init"


def test_only_a_first_text_block_can_be_a_command():
    """Content blocks: the first text block is neutralised, in a copy; an image first
    (or a later text block) is left alone."""
    blocks = [{"type": "text", "text": "/init"}, {"type": "text", "text": "/cost"}]
    assert as_user_text(blocks) == [
        {"type": "text", "text": " /init"},
        {"type": "text", "text": "/cost"},
    ]
    assert blocks[0]["text"] == "/init"
    image_first = [{"type": "image", "source": {}}, {"type": "text", "text": "/init"}]
    assert as_user_text(image_first) == image_first
    assert command_name("/review 12") == "review"
    assert command_name("review") is None


async def test_the_actor_sends_a_slash_prompt_as_text_unless_allowed(tmp_path, autojump_clock):
    """Through the supervisor: ``/init`` reaches the client as text; with
    ``slash_commands={"compact"}``, ``/compact`` reaches it as the command."""
    factory = ScriptedClientFactory()
    policy = ActorPolicy(slash_commands=frozenset({"compact"}))
    config = SupervisorConfig(workspace_root=tmp_path, warm_pool_size=0, policy=policy)
    with trio.fail_after(10):
        async with open_supervisor(config, factory) as supervisor:
            key = SessionKey("slash")
            for prompt in ("/init", "/compact", "plain"):
                async with supervisor.open_turn(key, Turn(prompt)) as events:
                    assert isinstance([e async for e in events][-1], TurnCompleted)
    assert factory.clients[0].prompts == [" /init", "/compact", "plain"]
