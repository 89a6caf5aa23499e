"""End to end: the official ``anthropic`` client against ``ccactors serve --offline``,
through the real Claude Code CLI."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import pytest

from .conftest import MODEL, ask

pytestmark = pytest.mark.e2e


def test_non_streaming_reply_is_an_anthropic_message(client):
    """A non-streaming request gets a Message with the CLI's answer and real usage, and
    the response names its session."""
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "hello there"}],
        extra_headers={"X-Session-ID": "e2e-plain"},
    )
    message = raw.parse()
    assert raw.headers["X-Session-ID"] == "e2e-plain"
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert [block.text for block in message.content] == ["echo: hello there"]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


def test_a_leading_slash_is_the_users_text_not_a_command(client):
    """``/init`` would make Claude Code replace the message with its own long prompt;
    by default it reaches the model as the user's text, in a session and without one."""
    assert ask(client, "e2e-slash", "/init") == "echo: /init"
    assert ask(client, "e2e-slash", "/cost") == "echo: /cost"
    assert ask(client, None, "/init") == "echo: /init"


def test_streaming_reply_arrives_as_token_level_deltas(client):
    """A streaming request yields Anthropic's event sequence with one text delta per
    upstream chunk, ending in message_stop."""
    with client.messages.stream(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "stream me [[chunks=5]]"}],
        extra_headers={"X-Session-ID": "e2e-stream"},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds.count("content_block_delta") == 5
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert final.content[0].text == "echo: stream me [[chunks=5]]"
    assert final.usage.output_tokens > 0


def test_turns_of_one_session_continue_one_conversation(client):
    """Three turns on one session see the whole conversation (count=1,2,3) although each
    request carries only the new message; another session starts at count=1."""
    answers = [ask(client, "e2e-count", "[[count]]") for _ in range(3)]
    assert answers == ["count=1", "count=2", "count=3"]
    assert ask(client, "e2e-count-other", "[[count]]") == "count=1"


def test_disconnect_mid_stream_leaves_the_session_usable_with_one_cli(server, client):
    """A client that disconnects after the first delta of a long stream interrupts the
    turn; the session's next turn answers its own prompt, on the same single CLI."""
    session = "e2e-disconnect"
    assert ask(client, session, "warm up") == "echo: warm up"
    pid = server.session(session)["cli_pid"]
    body = {
        "model": MODEL,
        "max_tokens": 256,
        "stream": True,
        "messages": [{"role": "user", "content": "long [[chunks=50]] [[chunk_delay=0.1]]"}],
    }
    started = time.monotonic()
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST", f"{server.url}/v1/messages", json=body, headers={"X-Session-ID": session}
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:") and "content_block_delta" in line:
                break
    assert time.monotonic() - started < 4, "the first delta should come long before the end"
    assert ask(client, session, "what now?") == "echo: what now?"
    assert server.session(session)["cli_pid"] == pid
    assert pid in server.cli_pids()
    server.wait_until_every_cli_is_accounted_for()


def test_request_without_session_starts_one_with_its_history_as_context(server, client):
    """Without a session id, a history no session holds starts a new session (with a
    server-minted id, in ``X-Session-ID``) and reaches it as context, once; the next
    request resending that conversation continues the session with only its new
    message (docs/explanation/lineage.md)."""
    history = [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "Hello Ada"},
        {"role": "user", "content": "what is my name?"},
    ]
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=256, messages=history)
    text = raw.parse().content[0].text
    assert text.startswith("echo: ")
    assert "my name is Ada" in text and "what is my name?" in text
    session = raw.headers["X-Session-ID"]
    history += [{"role": "assistant", "content": text}, {"role": "user", "content": "thanks"}]
    again = client.messages.with_raw_response.create(model=MODEL, max_tokens=256, messages=history)
    assert again.parse().content[0].text == "echo: thanks"
    assert again.headers["X-Session-ID"] == session
    assert server.session(session)["turns"] == 2
    server.wait_until_every_cli_is_accounted_for()


def test_upstream_errors_keep_their_status_and_the_session_goes_on(server, client):
    """An API error the CLI gets is reported with the API's status and error type (an
    ``error`` event when streaming, with no stray text), and the session's next turn
    answers its own prompt."""
    session = "e2e-upstream-error"
    with pytest.raises(anthropic.APIStatusError) as caught:
        ask(client, session, "fail [[error=529]]")
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "fail again [[error=429]]"}],
    }
    response = httpx.post(
        f"{server.url}/v1/messages", json=body, headers={"X-Session-ID": session}, timeout=30
    )
    frames = [line for line in response.text.splitlines() if line.startswith("data:")]
    assert "content_block_delta" not in response.text
    error = json.loads(frames[-1].removeprefix("data:"))
    assert error["error"]["type"] == "rate_limit_error"
    assert ask(client, session, "all good now") == "echo: all good now"


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [
        (b"{not json", {}, "not valid JSON"),
        (b"[1, 2]", {}, "JSON object"),
        (
            json.dumps({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            {},
            "model",
        ),
        (json.dumps({"model": "m", "max_tokens": 5}), {}, "messages"),
        (json.dumps({"model": "m", "max_tokens": 5, "messages": []}), {}, "messages"),
        (
            json.dumps(
                {"model": "m", "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}
            ),
            {},
            "role",
        ),
        (
            json.dumps(
                {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
            ),
            {"X-Session-ID": "x" * 129},
            "session id",
        ),
        (
            json.dumps(
                {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
            ),
            {"X-Session-ID": "../../etc/passwd"},
            "session id",
        ),
        (
            json.dumps(
                {
                    "model": "m",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "x"}],
                    "metadata": {"session_id": "a b"},
                }
            ),
            {},
            "session id",
        ),
    ],
    ids=[
        "malformed-json",
        "not-an-object",
        "missing-model",
        "missing-messages",
        "empty-messages",
        "bad-role",
        "session-id-too-long",
        "session-id-with-path",
        "session-id-with-space",
    ],
)
def test_bad_requests_get_400_with_anthropic_error_json(server, body, headers, needle):
    """Client mistakes get 400 and Anthropic's error body naming the problem."""
    response = httpx.post(
        f"{server.url}/v1/messages",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert needle in error["error"]["message"]


def test_official_client_raises_bad_request_for_client_mistakes(client):
    """The official client sees our 400 as its own BadRequestError."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=256,
            messages=[{"role": "assistant", "content": "I speak last"}],
            extra_headers={"X-Session-ID": "e2e-bad"},
        )
    assert caught.value.status_code == 400


def test_session_listing_shows_state_and_pid(server, client):
    """GET /v1/sessions/{id} reports the session's state, CLI pid and Claude session id."""
    ask(client, "e2e-listing", "hi")
    info = server.session("e2e-listing")
    assert info["state"] == "idle"
    assert info["turns"] == 1
    assert info["cli_pid"] in server.cli_pids()
    assert info["claude_session_id"]
    missing = httpx.get(f"{server.url}/v1/sessions/never-seen", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
