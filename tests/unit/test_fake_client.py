"""The scripted fake client grows with the ``ClaudeClient`` protocol: model switches,
forks at a turn, prompts of content blocks. On the virtual clock."""

from __future__ import annotations

import pytest
import trio

from actors import ClientError, SessionSpec
from actors._client import StreamEvent, TurnResult
from actors.testing import ScriptedClientFactory, text_reply


async def turn(client, prompt) -> tuple[str, TurnResult]:
    """Send ``prompt``; the streamed text and the turn's result."""
    await client.query(prompt)
    text, model = "", None
    while not isinstance(message := await client.receive(), TurnResult):
        if isinstance(message, StreamEvent):
            event = message.event
            if event["type"] == "message_start":
                model = event["message"]["model"]
            if event["type"] == "content_block_delta":
                text += event["delta"]["text"]
    return f"{model}: {text}", message


async def test_set_model_switches_the_model_between_turns_in_the_same_client(
    tmp_path, autojump_clock
):
    """After ``set_model`` the next turn runs on that model, without a new client and
    without taking time; ``None`` goes back to the default."""
    factory = ScriptedClientFactory()
    async with factory(SessionSpec(tmp_path)) as client:
        t0 = trio.current_time()
        assert (await turn(client, "a"))[0] == "fake-model: echo: a #1"
        await client.set_model("claude-other")
        assert (await turn(client, "b"))[0] == "claude-other: echo: b #2"
        assert trio.current_time() == t0
    assert len(factory.clients) == 1


async def test_a_fork_resumes_at_a_turn_as_a_new_session_leaving_the_original(
    tmp_path, autojump_clock
):
    """Resuming at turn 2's assistant message as a fork continues from turn 2 under a new
    Claude session id; the original conversation keeps all its turns."""
    factory = ScriptedClientFactory()
    async with factory(SessionSpec(tmp_path)) as client:
        results = [(await turn(client, prompt))[1] for prompt in ("a", "b", "c")]
    original = results[0].claude_session_id
    spec = SessionSpec(tmp_path, resume=original, resume_at=results[1].assistant_uuid, fork=True)
    async with factory(spec) as client:
        text, result = await turn(client, "d")
    assert text == "fake-model: echo: d #3"
    assert result.claude_session_id != original
    assert factory.transcripts[original] == ["a", "b", "c"]
    assert factory.transcripts[result.claude_session_id] == ["a", "b", "d"]


async def test_resuming_at_an_unknown_message_fails_to_start(tmp_path, autojump_clock):
    """A fork point that is not in the conversation is refused, as the CLI refuses it."""
    factory = ScriptedClientFactory()
    async with factory(SessionSpec(tmp_path)) as client:
        _, result = await turn(client, "a")
    spec = SessionSpec(tmp_path, resume=result.claude_session_id, resume_at="nope", fork=True)
    with pytest.raises(ClientError, match="nope"):
        async with factory(spec):
            pass


async def test_a_prompt_of_content_blocks_is_one_user_message(tmp_path, autojump_clock):
    """A prompt of text and image blocks is sent as given; the script sees its text."""
    factory = ScriptedClientFactory(script=lambda prompt, history: text_reply(prompt))
    blocks = [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}},
    ]
    async with factory(SessionSpec(tmp_path)) as client:
        text, _ = await turn(client, blocks)
    assert text == "fake-model: what is this?\n\n[image]"
    assert factory.clients[0].sent == [blocks]
