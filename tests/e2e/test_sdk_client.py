"""End to end: the SDK adapter's newer abilities on the real CLI and the offline upstream
(model switch, fork at a turn, prompts of content blocks), without the HTTP server."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import zlib
from pathlib import Path

import pytest
import trio

from actors import CliOptions, SessionSpec, open_sdk_client
from actors._client import AssistantText, SessionInit, StreamEvent, TurnResult
from app._server import CLI_QUIET_ENV, OFFLINE_API_KEY
from app.offline._upstream import serve_upstream

from .conftest import claude_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
async def cli(nursery: trio.Nursery, tmp_path: Path) -> CliOptions:
    """Options for CLIs that talk to a fresh offline upstream, state under tmp_path."""
    upstream = await nursery.start(serve_upstream, "127.0.0.1", 0)
    return CliOptions(
        cli_path=claude_cli(),
        env={
            **CLI_QUIET_ENV,
            "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
            "ANTHROPIC_BASE_URL": upstream,
            "ANTHROPIC_API_KEY": OFFLINE_API_KEY,
            "CLAUDE_CODE_MAX_RETRIES": "0",
        },
        tools=("Read",),
    )


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


async def turn(client, prompt) -> tuple[str, str | None, list, TurnResult]:
    """Send ``prompt``; the reply text, the model of its first API message, every message
    before the result, and the result."""
    await client.query(prompt)
    text, model, messages = [], None, []
    while not isinstance(message := await client.receive(), TurnResult):
        messages.append(message)
        if isinstance(message, AssistantText):
            text.append(message.text)
        if isinstance(message, StreamEvent) and message.event["type"] == "message_start":
            model = model or message.event["message"]["model"]
    return "".join(text), model, messages, message


async def test_set_model_switches_the_model_of_the_running_cli(cli, cwd):
    """After ``set_model`` the CLI's next API request names that model; same process."""
    with trio.fail_after(90):
        async with open_sdk_client(cli, SessionSpec(cwd)) as client:
            pid = client.pid
            _, first, _, _ = await turn(client, "one")
            await client.set_model("claude-haiku-4-5-20251001")
            text, second, _, _ = await turn(client, "two")
            assert client.pid == pid
    assert text == "echo: two"
    assert second == "claude-haiku-4-5-20251001" != first


async def test_a_resumed_cli_runs_the_model_on_its_command_line_else_its_conversations(cli, cwd):
    """What ``ActorPolicy.resume_model`` relies on: a CLI resuming a conversation that
    last ran on another model runs the model named on its command line (``--model``);
    with none, the model the conversation last ran on, not Claude Code's default."""
    with trio.fail_after(120):
        async with open_sdk_client(cli, SessionSpec(cwd)) as client:
            _, default, _, _ = await turn(client, "one")
            await client.set_model("claude-haiku-4-5-20251001")
            _, switched, _, result = await turn(client, "two")
        resume = SessionSpec(cwd, resume=result.claude_session_id)
        async with open_sdk_client(cli, resume) as client:
            text, on_none, _, _ = await turn(client, "three")
        named = dataclasses.replace(cli, model="claude-sonnet-4-6")
        async with open_sdk_client(named, resume) as client:
            _, on_named, _, _ = await turn(client, "four")
    assert text == "echo: three"  # the same conversation, resumed
    assert switched == "claude-haiku-4-5-20251001" != default
    assert (on_none, on_named) == (switched, "claude-sonnet-4-6")


async def test_warm_up_puts_nothing_into_a_conversation(cli, cwd, tmp_path):
    """``warm_up`` on a new CLI writes no transcript; the first turn after it is the
    conversation's first and only user message."""
    projects = tmp_path / "claude" / "projects"
    with trio.fail_after(90):
        async with open_sdk_client(cli, SessionSpec(cwd)) as client:
            await client.warm_up()
            assert not list(projects.rglob("*.jsonl"))
            text, _, _, result = await turn(client, "hello")
    assert text == "echo: hello"
    [transcript] = projects.rglob(f"{result.claude_session_id}.jsonl")
    users = [
        entry["message"]["content"]
        for entry in map(json.loads, transcript.read_text().splitlines())
        if entry.get("type") == "user"
    ]
    assert users == ["hello"]


async def test_a_fork_at_a_turn_continues_from_there_as_a_new_session(cli, cwd, tmp_path):
    """Resuming at turn 2's assistant message as a fork: the model sees turns 1 and 2 and
    the new prompt (not turn 3), under a new Claude session id; the original transcript
    is left byte for byte as it was."""
    with trio.fail_after(120):
        async with open_sdk_client(cli, SessionSpec(cwd)) as client:
            results = [(await turn(client, f"{n} [[count]]"))[3] for n in "abc"]
        original = results[0].claude_session_id
        assert all(result.assistant_uuid for result in results)
        (transcript,) = (tmp_path / "claude" / "projects").glob(f"*/{original}.jsonl")
        before = transcript.read_bytes()
        spec = SessionSpec(cwd, resume=original, resume_at=results[1].assistant_uuid, fork=True)
        async with open_sdk_client(cli, spec) as client:
            text, _, messages, result = await turn(client, "d [[count]]")
    assert text == "count=3"
    assert result.claude_session_id != original
    assert SessionInit(result.claude_session_id) in messages
    assert transcript.read_bytes() == before


def png_1x1() -> str:
    """A valid one-pixel PNG, base64."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


async def test_a_prompt_of_content_blocks_reaches_the_api_as_blocks(cli, cwd):
    """Image, document and text blocks sent as one user message reach the Messages API
    as blocks of one user message, in order (the upstream leaves out the text block the
    CLI appends to say where it saved the image)."""
    image = {"type": "base64", "media_type": "image/png", "data": png_1x1()}
    blocks = [
        {"type": "image", "source": image},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a"}},
        {"type": "text", "text": "what are these? [[blocks]]"},
    ]
    with trio.fail_after(90):
        async with open_sdk_client(cli, SessionSpec(cwd)) as client:
            text, _, _, result = await turn(client, blocks)
    assert not result.is_error, result
    assert text == "blocks=image,document,text"
