"""The SDK adapter (``actors._sdk``) on the real ``claude-agent-sdk``, driving a small
stand-in CLI (``fake_cli.py``) instead of Claude Code: real subprocess, real SDK, fast.

Also the guards for the private SDK details the adapter relies on (listed in its module
docstring): if a new SDK release moves one, these fail by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import psutil
import pytest
import trio

from actors import (
    BUNDLED_CLI,
    ClientError,
    CliOptions,
    ModelRefusedError,
    SessionSpec,
    open_sdk_client,
)
from actors._client import AssistantText, SessionInit, StreamEvent, TurnResult

FAKE_CLI = Path(__file__).with_name("fake_cli.py")


def options(tmp_path: Path, **env: str) -> CliOptions:
    pid_file = tmp_path / "cli.pid"
    return CliOptions(
        cli_path=FAKE_CLI,
        env={"FAKE_CLI_PID_FILE": str(pid_file), **env},
        close_timeout_s=0.5,
    )


async def receive_turn(client) -> list:
    messages = []
    while not isinstance(message := await client.receive(), TurnResult):
        messages.append(message)
    return [*messages, message]


async def test_the_sdk_still_exposes_the_cli_process(tmp_path):
    """Guard for ``ClaudeSDKClient._transport._process``: the adapter's pid, liveness and
    kill reach the CLI process the SDK started."""
    with trio.fail_after(20):
        async with open_sdk_client(options(tmp_path), SessionSpec(tmp_path)) as client:
            started = int((tmp_path / "cli.pid").read_text())
            assert client.pid == started
            assert client.alive
            client.abort()
            await client.wait_exited()
            assert not client.alive
    assert not psutil.pid_exists(started) or psutil.Process(started).status() == "zombie"


def test_the_sdk_wheel_still_bundles_its_cli():
    """Guard for ``claude_agent_sdk/_bundled/claude``: the locked SDK wheel carries the
    pinned Claude Code CLI, executable, with its version recorded beside it."""
    assert BUNDLED_CLI.is_file(), f"no CLI bundled at {BUNDLED_CLI}"
    assert os.access(BUNDLED_CLI, os.X_OK)
    version = (BUNDLED_CLI.parent / "claude.version").read_text()
    assert version.startswith("2."), version


async def test_a_turn_and_its_transcript_uuids(tmp_path):
    """A text prompt and a prompt of content blocks each reach the CLI as one user
    message; the result carries the assistant and prompt transcript uuids."""
    with trio.fail_after(20):
        async with open_sdk_client(options(tmp_path), SessionSpec(tmp_path)) as client:
            await client.query("hello")
            messages = await receive_turn(client)
            assert messages[0] == SessionInit("fake-session")
            assert [m.event["n"] for m in messages if isinstance(m, StreamEvent)] == [0, 1, 2]
            assert AssistantText(json.dumps("hello")) in messages
            assert messages[-1].assistant_uuid == "assistant-1"
            assert messages[-1].user_message_uuid == "user-1"
            blocks = [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png"}},
            ]
            await client.query(blocks)
            messages = await receive_turn(client)
            assert AssistantText(json.dumps(blocks)) in messages
            assert messages[-1].assistant_uuid == "assistant-2"


async def test_set_model_switches_the_running_cli(tmp_path):
    """``set_model`` reaches the same CLI process between turns (no restart)."""
    with trio.fail_after(20):
        async with open_sdk_client(options(tmp_path), SessionSpec(tmp_path)) as client:
            pid = client.pid
            await client.set_model("claude-other")
            await client.query("hi")
            await receive_turn(client)
            assert client.pid == pid


async def test_a_refused_model_leaves_the_cli_usable(tmp_path):
    """A ``set_model`` the CLI answers with an error is ``ModelRefusedError``, not a
    ``ClientError``: the same CLI serves the next turn on its model as before."""
    with trio.fail_after(20):
        async with open_sdk_client(options(tmp_path), SessionSpec(tmp_path)) as client:
            with pytest.raises(ModelRefusedError, match="refused-model is not available"):
                await client.set_model("refused-model")
            assert client.alive
            await client.query("hi")
            messages = await receive_turn(client)
    assert not messages[-1].is_error


def test_system_prompt_options_keep_request_text_out_of_the_arguments(tmp_path):
    """Claude Code's own prompt by default; the operator's replacement or appended text
    as arguments (settings); a session's addition only as the path of its file."""
    cli = options(tmp_path)
    default = cli.sdk_options(SessionSpec(tmp_path))
    assert default.system_prompt == {"type": "preset", "preset": "claude_code"}
    assert default.extra_args == {}
    file = tmp_path / ".system"
    spec = SessionSpec(tmp_path, system_prompt_file=file)
    appended = dataclasses.replace(cli, append_system_prompt="OP").sdk_options(spec)
    assert appended.system_prompt == {"type": "preset", "preset": "claude_code", "append": "OP"}
    assert appended.extra_args == {"append-system-prompt-file": str(file)}
    both = dataclasses.replace(cli, system_prompt="MINE", append_system_prompt="OP")
    replaced = both.sdk_options(spec)
    assert replaced.system_prompt == "MINE"
    assert replaced.extra_args == {
        "append-system-prompt": "OP",
        "append-system-prompt-file": str(file),
    }


async def test_a_cancelled_receive_loses_no_message(tmp_path):
    """Receives cancelled at arbitrary moments while messages stream in lose none and
    reorder none."""
    cli = options(tmp_path, FAKE_CLI_EVENTS="40", FAKE_CLI_EVENT_DELAY="0.005")
    with trio.fail_after(30):
        async with open_sdk_client(cli, SessionSpec(tmp_path)) as client:
            await client.query("go")
            seen, cancelled = [], 0
            while not seen or not isinstance(seen[-1], TurnResult):
                with trio.move_on_after(0.002) as scope:
                    seen.append(await client.receive())
                cancelled += scope.cancelled_caught
    assert cancelled > 5
    assert [m.event["n"] for m in seen if isinstance(m, StreamEvent)] == list(range(40))


async def test_a_cli_that_exits_while_starting_fails_fast(tmp_path):
    """A CLI gone before its handshake is a ClientError at once, not after the SDK's 60 s
    handshake timeout."""
    started = time.monotonic()
    with trio.fail_after(20), pytest.raises(ClientError, match="exited while starting"):
        async with open_sdk_client(options(tmp_path, FAKE_CLI_MODE="exit0"), SessionSpec(tmp_path)):
            pass
    assert time.monotonic() - started < 10


async def test_closing_kills_a_cli_that_ignores_eof_and_sigterm(tmp_path):
    """Leaving the block ends even a CLI that ignores the end of its input and SIGTERM:
    SIGKILL ``close_timeout_s`` after SIGTERM, which follows the end of input by 1 s. The
    close is not cut short by the caller's cancellation."""
    cli = options(tmp_path, FAKE_CLI_MODE="stubborn")
    with trio.fail_after(20):
        with trio.CancelScope() as outer:
            async with open_sdk_client(cli, SessionSpec(tmp_path)) as client:
                pid = client.pid
                started = time.monotonic()
                outer.cancel()
                await trio.sleep_forever()
    took = time.monotonic() - started
    assert 1.5 <= took < 5, took
    assert not client.alive
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
