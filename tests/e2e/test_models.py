"""End to end: the model a request asks for, and the system prompt Claude Code sends,
through the official clients and the real CLI, proven by what the CLI sent the offline
upstream (``[[model]]``, ``[[system]]``).

Each new session (and each server) costs CLI starts, so the checks share them.
"""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from .conftest import SHORT_TIMEOUTS, Server, start_server, stop_server

pytestmark = pytest.mark.e2e


def say(client: anthropic.Anthropic, session: str | None, model: str, prompt: str, **fields):
    """One non-streaming Anthropic turn; (reply text, the response's model)."""
    headers = {"X-Session-ID": session} if session else {}
    message = client.messages.create(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": prompt}],
        extra_headers=headers,
        **fields,
    )
    return "".join(b.text for b in message.content if b.type == "text"), message.model


def test_a_session_runs_the_model_each_request_asks_for(server: Server, client):
    """A Claude model id reaches the CLI as is; an alias is resolved by Claude Code, and
    the response names the model that answered; a change of model mid-conversation
    takes effect on the next turn on the same CLI process, and the session shows it.
    Streamed, ``message_start`` names the model asked for."""
    session = "e2e-model-switch"
    assert say(client, session, "claude-sonnet-4-6", "[[model]]") == (
        "model=claude-sonnet-4-6",
        "claude-sonnet-4-6",
    )
    before = server.session(session)
    assert before["model"] == "claude-sonnet-4-6"
    text, model = say(client, session, "haiku", "[[model]]")
    assert text == f"model={model}"
    assert model.startswith("claude-haiku-")  # Claude Code's current haiku, not "haiku"
    after = server.session(session)
    assert (after["cli_pid"], after["claude_session_id"]) == (
        before["cli_pid"],
        before["claude_session_id"],
    )
    assert (after["model"], after["turns"], after["restarts"]) == ("haiku", 2, 0)
    with client.messages.stream(
        model="claude-opus-4-8",
        max_tokens=64,
        messages=[{"role": "user", "content": "[[model]]"}],
        extra_headers={"X-Session-ID": session},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert events[0].type == "message_start"
    assert events[0].message.model == "claude-opus-4-8"
    assert final.content[0].text == "model=claude-opus-4-8"
    assert server.session(session)["cli_pid"] == before["cli_pid"]


def test_openai_clients_get_the_model_they_asked_for_or_the_default(server: Server):
    """Through the official ``openai`` client: a Claude id runs as asked; ``gpt-4o`` (no
    Claude model) runs the server's default, and the stream's finishing chunk says which
    model that was; a malformed name is a 400 naming ``model``."""
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="test", max_retries=0, timeout=60
    ) as oai:
        headers = {"X-Session-ID": "e2e-model-openai"}
        messages = [{"role": "user", "content": "[[model]]"}]
        completion = oai.chat.completions.create(
            model="claude-sonnet-4-6", messages=messages, extra_headers=headers
        )
        assert completion.model == "claude-sonnet-4-6"
        assert completion.choices[0].message.content == "model=claude-sonnet-4-6"
        chunks = list(
            oai.chat.completions.create(
                model="gpt-4o", messages=messages, extra_headers=headers, stream=True
            )
        )
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        default = answer.removeprefix("model=")
        assert default.startswith("claude-")  # Claude Code's default model ran
        # Chunks name the model asked of Claude Code (its default) until the finishing
        # chunk, which names the model that answered.
        assert [c.model for c in chunks] == ["default"] * (len(chunks) - 1) + [default]
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model="gpt 4o", messages=messages)
    assert refused.value.body["param"] == "model"


def _argv_and_environ(pid: int) -> tuple[str, bytes]:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
    return argv, Path(f"/proc/{pid}/environ").read_bytes()


def _tail(reply: str) -> tuple[int, str]:
    """(length, tail) of a ``[[system]]`` reply."""
    head, _, tail = reply.partition(" chars ending: ")
    return int(head.removeprefix("system=")), tail


def test_operator_append_and_client_append_modes(tmp_path):
    """Operator's text appended to Claude Code's own prompt, and a client's ``system``
    appended (``client_system=append``) through both APIs: the CLI sends Claude Code's
    prompt, then the client's text, then the operator's. The client's text never
    appears in the CLI's arguments or environment, and its session does not adopt the
    warm CLI. A later request's ``system`` leaves the session's prompt as it was."""
    env = {
        **SHORT_TIMEOUTS,
        "CCACTORS_APPEND_SYSTEM_PROMPT": "OPERATOR-APPENDED",
        "CCACTORS_CLIENT_SYSTEM": "append",
        "CCACTORS_WARM_POOL_SIZE": "1",
    }
    server = start_server(tmp_path / "state", tmp_path / "server.log", env=env)
    try:
        with anthropic.Anthropic(base_url=server.url, api_key="t", max_retries=0) as client:
            warm = set(httpx.get(f"{server.url}/v1/stats", timeout=10).json()["warm_pids"])
            text, _ = say(client, "sys-a", "m", "[[system]]", system="CLIENT-SYSTEM-A")
            size, tail = _tail(text)
            assert tail.endswith("\n\nCLIENT-SYSTEM-A\n\nOPERATOR-APPENDED")
            assert size > 2000  # Claude Code's own prompt is still there
            pid = server.session("sys-a")["cli_pid"]
            assert pid not in warm
            argv, environ = _argv_and_environ(pid)
            assert "--append-system-prompt-file " in argv
            assert "OPERATOR-APPENDED" in argv
            assert b"CLIENT-SYSTEM-A" not in argv.encode() + environ
            again, _ = say(client, "sys-a", "m", "[[system]]", system="CHANGED")
            assert _tail(again) == (size, tail)
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="t", max_retries=0) as oai:
            completion = oai.chat.completions.create(
                model="m",
                messages=[
                    {"role": "system", "content": "CLIENT-SYSTEM-O"},
                    {"role": "user", "content": "[[system]]"},
                ],
            )
        _, tail = _tail(completion.choices[0].message.content)
        assert tail.endswith("\n\nCLIENT-SYSTEM-O\n\nOPERATOR-APPENDED")
    finally:
        assert stop_server(server) == 0, server.log()


def test_operator_replace_and_client_ignore_modes(tmp_path):
    """The operator's text instead of Claude Code's prompt, and a client's ``system``
    ignored (``client_system=ignore``): the prompt the CLI sends ends with the
    operator's text and is short, and the client's text is in neither the system
    prompt nor the user's message."""
    env = {
        **SHORT_TIMEOUTS,
        "CCACTORS_SYSTEM_PROMPT": "OPERATOR-REPLACED",
        "CCACTORS_CLIENT_SYSTEM": "ignore",
        "CCACTORS_WARM_POOL_SIZE": "0",
    }
    server = start_server(tmp_path / "state", tmp_path / "server.log", env=env)
    try:
        with anthropic.Anthropic(base_url=server.url, api_key="t", max_retries=0) as client:
            text, _ = say(client, "sys-r", "m", "[[system]]", system="CLIENT-SYSTEM")
            size, tail = _tail(text)
            assert tail.endswith("OPERATOR-REPLACED")
            assert "CLIENT-SYSTEM" not in tail
            assert size < 500  # Claude Code's identity line and ours; not its prompt
            echoed, _ = say(client, "sys-r", "m", "plain", system="CLIENT-SYSTEM")
            assert echoed == "echo: plain"
    finally:
        assert stop_server(server) == 0, server.log()


def test_client_instructions_mode_puts_system_in_the_opening_message(server: Server, client):
    """By default (``client_system=instructions``) a client's ``system`` goes ahead of
    the opening turn's message, as the CLI's transcript shows, and stays out of the
    system prompt the CLI sends."""
    session = "e2e-instructions"
    text, _ = say(client, session, "m", "[[system]]", system="CLIENT-SYSTEM-I")
    assert "CLIENT-SYSTEM-I" not in text
    server.wait_for_transcript(session, "CLIENT-SYSTEM-I")
    transcript = httpx.get(f"{server.url}/v1/sessions/{session}/messages", timeout=10).json()
    first = transcript["data"][0]
    assert first["role"] == "user"
    texts = " ".join(block["text"] for block in first["content"] if block["type"] == "text")
    assert "Instructions:\n\nCLIENT-SYSTEM-I" in texts
