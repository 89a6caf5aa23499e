"""The HTTP layer over the actors, with the scripted fake client (no CLI).

What the real CLI and real clients do end to end is in tests/e2e; here: how requests map
to sessions, how refusals map to status codes, and the shape of the SSE stream.
"""

from __future__ import annotations

import json
import math

import pytest
import trio
from werkzeug.datastructures import Headers

from actors import (
    ActorPolicy,
    SessionKey,
    SupervisorConfig,
    TextDelta,
    ThinkingDelta,
    open_supervisor,
)
from actors._types import TurnCompleted, TurnFailed, Usage
from actors.testing import ScriptedClientFactory, text_reply
from app._settings import Settings
from app.http._app import create_app
from app.http._session_ids import session_id_from
from app.wire._anthropic import StreamEncoder

BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of each frame; comments skipped."""
    frames = []
    for chunk in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines() if not line.startswith(":"))
        if "data" in lines:
            frames.append((lines.get("event"), json.loads(lines["data"])))
    return frames


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, sse_ping_interval_s=5)


async def test_session_ids_resolve_in_documented_order():
    """X-Session-ID, then X-Claude-Code-Session-Id, then metadata.user_id (legacy suffix
    or JSON), then metadata.session_id."""
    uuid = "0b7f8e0c-1b2a-4c3d-9e8f-001122334455"
    legacy = {"metadata": {"user_id": f"user_abc123_account_{'f' * 8}_session_{uuid}"}}
    as_json = {"metadata": {"user_id": json.dumps({"session_id": "from-json"})}}
    both = {"metadata": {"user_id": "plain-user", "session_id": "from-metadata"}}
    assert (
        session_id_from(Headers({"X-Session-ID": "a", "X-Claude-Code-Session-Id": "b"}), {}) == "a"
    )
    assert session_id_from(Headers({"X-Claude-Code-Session-Id": "b"}), legacy) == "b"
    assert session_id_from(Headers(), legacy) == uuid
    assert session_id_from(Headers(), as_json) == "from-json"
    assert session_id_from(Headers(), both) == "from-metadata"
    assert session_id_from(Headers(), BODY) is None


async def test_stream_encoder_opens_a_block_per_block_index():
    """Deltas of a new block_index close the open block and start the next one, with
    Anthropic's own consecutive indexes; completion closes the message."""
    encoder = StreamEncoder("turn_abc", "m")
    frames = encoder.start()
    for event in [
        ThinkingDelta("t", "hmm", 0),
        TextDelta("t", "a", 1),
        TextDelta("t", "b", 1),
        TextDelta("t", "c", 3),
        TurnCompleted("t", "end_turn", Usage(5, 7), 0.0, "cs", 1, "m"),
    ]:
        frames += encoder.encode(event)
    events = sse_events(b"".join(frames))
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    starts = [data for name, data in events if name == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "text", "text"]
    assert events[12][1]["usage"]["output_tokens"] == 7


async def test_failed_turn_becomes_an_error_event():
    """A turn that fails mid-stream ends with an Anthropic ``error`` event."""
    encoder = StreamEncoder("turn_abc", "m")
    frames = encoder.encode(TextDelta("t", "a", 0)) + encoder.encode(
        TurnFailed("t", "timeout", "no answer")
    )
    name, data = sse_events(b"".join(frames))[-1]
    assert name == "error"
    assert data == {"type": "error", "error": {"type": "timeout_error", "message": "no answer"}}


async def test_streaming_response_over_the_fake_client(tmp_path, settings):
    """POST /v1/messages with stream=true returns the SSE sequence and the session id."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("one two", chunks=2))
    async with open_supervisor(SupervisorConfig(workspace_root=tmp_path), factory) as sup:
        client = create_app(sup, settings).test_client()
        response = await client.post(
            "/v1/messages", json={**BODY, "stream": True}, headers={"X-Session-ID": "s1"}
        )
        assert response.status_code == 200
        assert response.headers["X-Session-ID"] == "s1"
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(await response.get_data())
    deltas = [d["delta"]["text"] for name, d in events if name == "content_block_delta"]
    assert deltas == ["one ", "two"]
    assert events[-1][0] == "message_stop"


async def test_new_session_without_a_live_slot_gets_503_with_retry_after(
    tmp_path, settings, autojump_clock
):
    """When every live slot is held by a busy session, a new session waits
    ``live_slot_wait_s`` for one, then is refused with 503 + Retry-After, streaming or
    not (before any SSE headers)."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=math.inf))
    config = SupervisorConfig(workspace_root=tmp_path, max_live_sessions=1, live_slot_wait_s=2)
    async with open_supervisor(config, factory) as sup, trio.open_nursery() as nursery:
        client = create_app(sup, settings).test_client()
        busy = {"X-Session-ID": "busy"}
        nursery.start_soon(lambda: client.post("/v1/messages", json=BODY, headers=busy))
        await trio.testing.wait_all_tasks_blocked()
        for body in (BODY, {**BODY, "stream": True}):
            t0 = trio.current_time()
            refused = await client.post("/v1/messages", json=body, headers={"X-Session-ID": "b"})
            assert trio.current_time() - t0 == 2
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) >= 1
            error = await refused.get_json()
            assert error["error"]["type"] == "overloaded_error"
        nursery.cancel_scope.cancel()


async def test_full_mailbox_gets_429_with_retry_after(tmp_path, settings, autojump_clock):
    """More turns than the mailbox holds for one session get 429 + Retry-After."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=math.inf))
    config = SupervisorConfig(workspace_root=tmp_path, mailbox_size=1)
    async with open_supervisor(config, factory) as sup, trio.open_nursery() as nursery:
        client = create_app(sup, settings).test_client()
        headers = {"X-Session-ID": "busy"}
        for _ in range(2):  # one running, one waiting
            nursery.start_soon(lambda: client.post("/v1/messages", json=BODY, headers=headers))
            await trio.testing.wait_all_tasks_blocked()
        assert sup.session(SessionKey("busy")).mailbox_depth == 1
        refused = await client.post("/v1/messages", json=BODY, headers=headers)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert (await refused.get_json())["error"]["type"] == "rate_limit_error"
        nursery.cancel_scope.cancel()


async def test_unknown_path_and_method_get_anthropic_errors(tmp_path, settings):
    """404 and 405 come as Anthropic error JSON too."""
    async with open_supervisor(
        SupervisorConfig(workspace_root=tmp_path), ScriptedClientFactory()
    ) as sup:
        client = create_app(sup, settings).test_client()
        missing = await client.get("/v1/nothing")
        assert missing.status_code == 404
        assert (await missing.get_json())["error"]["type"] == "not_found_error"
        wrong = await client.get("/v1/messages")
        assert wrong.status_code == 405
        assert (await wrong.get_json())["type"] == "error"


async def test_failed_turn_tells_official_clients_not_to_retry(tmp_path, settings, autojump_clock):
    """A turn that failed after reaching the CLI (here: a first-chunk timeout, 504) says
    ``x-should-retry: false``: the official clients would otherwise re-send the prompt."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=math.inf))
    config = SupervisorConfig(workspace_root=tmp_path, policy=ActorPolicy(first_chunk_timeout_s=3))
    async with open_supervisor(config, factory) as sup:
        client = create_app(sup, settings).test_client()
        response = await client.post("/v1/messages", json=BODY, headers={"X-Session-ID": "s"})
        assert response.status_code == 504
        assert response.headers["x-should-retry"] == "false"
        assert (await response.get_json())["error"]["type"] == "timeout_error"


async def test_oversized_requests_are_refused_with_clear_errors(tmp_path):
    """A body over max_body_bytes is a 413; more than max_messages messages or a prompt
    over max_prompt_chars a 400; each says the limit, and no turn is started."""
    settings = Settings(
        state_dir=tmp_path, max_body_bytes=4096, max_messages=3, max_prompt_chars=100
    )
    factory = ScriptedClientFactory()
    async with open_supervisor(SupervisorConfig(workspace_root=tmp_path), factory) as sup:
        client = create_app(sup, settings).test_client()
        huge = {**BODY, "messages": [{"role": "user", "content": "x" * 5000}]}
        response = await client.post("/v1/messages", json=huge)
        assert response.status_code == 413
        assert (await response.get_json())["error"]["type"] == "request_too_large"
        many = {**BODY, "messages": [{"role": "user", "content": "x"}] * 4}
        response = await client.post("/v1/messages", json=many)
        assert response.status_code == 400
        assert "at most 3" in (await response.get_json())["error"]["message"]
        long = {**BODY, "messages": [{"role": "user", "content": "y" * 101}]}
        response = await client.post("/v1/messages", json=long)
        assert response.status_code == 400
        assert "at most 100" in (await response.get_json())["error"]["message"]
        openai_long = {"model": "m", "messages": [{"role": "user", "content": "y" * 101}]}
        response = await client.post("/v1/chat/completions", json=openai_long)
        assert response.status_code == 400
    assert factory.clients == []
