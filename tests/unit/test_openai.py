"""The OpenAI Chat Completions front end over the actors, with the scripted fake client.

What the official ``openai`` client sees through the real CLI is in tests/e2e; here: the
shapes of completions and chunks, the field policy, how refusals and failures map to
OpenAI error JSON, and what prompt each request sends to its session.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import trio

from actors import ActorPolicy
from actors._client import AssistantText, StreamEvent
from actors.testing import ScriptedClientFactory, Step, text_reply
from app._settings import Settings

from .serving import open_client

PATH = "/v1/chat/completions"
PARAMETER, VALUE = "unsupported_parameter", "unsupported_value"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
USAGE = {
    "input_tokens": 3,
    "output_tokens": 5,
    "cache_creation_input_tokens": 7,
    "cache_read_input_tokens": 11,
}


def reply(text: str, *, chunks: int = 1) -> list[Step]:
    """``text_reply`` whose result reports ``USAGE`` (with cache counts)."""
    *steps, last = text_reply(text, chunks=chunks)
    return [*steps, Step(last.delay, dataclasses.replace(last.message, usage=USAGE))]


def failing_reply(text: str, status: int) -> list[Step]:
    """Some text, then the CLI's error result for an API error with HTTP ``status``."""
    *steps, last = text_reply(text)
    error = dataclasses.replace(
        last.message, is_error=True, result="upstream says no", api_error_status=status
    )
    return [*steps, Step(last.delay, error)]


def data_frames(raw: bytes) -> list[dict | str]:
    """The ``data:`` payload of each SSE frame (JSON, or the ``[DONE]`` marker); no frame
    may name an event. Comments are skipped."""
    payloads: list[dict | str] = []
    for frame in raw.decode().split("\n\n"):
        lines = [line for line in frame.splitlines() if not line.startswith(":")]
        if not lines:
            continue
        assert len(lines) == 1 and lines[0].startswith("data: "), frame
        payload = lines[0].removeprefix("data: ")
        payloads.append(payload if payload == "[DONE]" else json.loads(payload))
    return payloads


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, sse_ping_interval_s=5, model="claude-test-model")


async def test_completion_has_openai_shape_and_maps_anthropic_usage(tmp_path, settings):
    """A non-streaming request gets a ``chat.completion`` naming the model that answered
    (``gpt-4o`` is no Claude model: the server's default ran); prompt tokens count
    uncached, cache-write and cache-read input, and the reads are ``cached_tokens``."""
    factory = ScriptedClientFactory(script=lambda p, h: reply("one two", chunks=2))
    async with open_client(tmp_path, settings, factory) as client:
        response = await client.post(PATH, json=BODY)
        completion = await response.get_json()
    assert response.status_code == 200
    assert response.headers["X-Session-ID"].startswith("conv_")  # a server-minted session
    assert completion["id"].startswith("chatcmpl-")
    assert completion["object"] == "chat.completion"
    assert isinstance(completion["created"], int)
    assert completion["model"] == "claude-test-model"
    [choice] = completion["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "one two"
    assert completion["usage"] == {
        "prompt_tokens": 3 + 7 + 11,
        "completion_tokens": 5,
        "total_tokens": 3 + 7 + 11 + 5,
        "prompt_tokens_details": {"cached_tokens": 11},
    }


async def test_stream_is_role_chunk_deltas_finish_usage_then_done(tmp_path, settings):
    """A streaming request yields ``data:`` chunks only: the assistant role, one chunk
    per text delta, an empty delta with ``finish_reason``, a ``choices: []`` usage chunk
    (asked for with ``include_usage``; earlier chunks carry ``usage: null``), then
    ``[DONE]``; every chunk has the completion's id."""
    factory = ScriptedClientFactory(script=lambda p, h: reply("one two three", chunks=3))
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    async with open_client(tmp_path, settings, factory) as client:
        response = await client.post(PATH, json=body, headers={"X-Session-ID": "s1"})
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["X-Session-ID"] == "s1"
        *chunks, done = data_frames(await response.get_data())
    assert done == "[DONE]"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert {c["model"] for c in chunks} == {"claude-test-model"}  # the default ran
    choices = [c["choices"][0] for c in chunks[:-1]]
    assert [c["delta"] for c in choices] == [
        {"role": "assistant", "content": ""},
        {"content": "one t"},
        {"content": "wo th"},
        {"content": "ree"},
        {},
    ]
    assert [c["finish_reason"] for c in choices] == [None, None, None, None, "stop"]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 26


async def test_stream_without_include_usage_sends_no_usage(tmp_path, settings):
    """Without ``stream_options.include_usage`` no chunk has a ``usage`` key and the last
    chunk before ``[DONE]`` is the one with ``finish_reason``."""
    async with open_client(tmp_path, settings) as client:
        response = await client.post(PATH, json={**BODY, "stream": True})
        *chunks, done = data_frames(await response.get_data())
    assert done == "[DONE]"
    assert not any("usage" in c for c in chunks)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"n": 2}, "n", VALUE),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", PARAMETER),
        ({"functions": [{"name": "f"}]}, "functions", PARAMETER),
        ({"tool_choice": "auto"}, "tool_choice", VALUE),
        ({"function_call": "auto"}, "function_call", VALUE),
        ({"response_format": {"type": "json_object"}}, "response_format", VALUE),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format", VALUE),
        ({"logprobs": True}, "logprobs", VALUE),
        ({"top_logprobs": 3}, "top_logprobs", VALUE),
        ({"logit_bias": {"50256": -100}}, "logit_bias", PARAMETER),
        ({"stop": ["\n"]}, "stop", PARAMETER),
        ({"stop": "END"}, "stop", PARAMETER),
        ({"modalities": ["text", "audio"]}, "modalities", VALUE),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", PARAMETER),
        ({"web_search_options": {"search_context_size": "low"}}, "web_search_options", PARAMETER),
        ({"stream_options": {"include_usage": True}}, "stream_options", VALUE),
    ],
)
async def test_fields_that_cannot_be_honoured_are_refused_with_400(
    tmp_path, settings, extra, param, code
):
    """Each field the server cannot honour is a 400 in OpenAI's error format naming the
    field (``param``), never silently dropped; no turn runs."""
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, settings, factory) as client:
        response = await client.post(PATH, json={**BODY, **extra})
        body = await response.get_json()
    assert response.status_code == 400, body
    assert body == {
        "error": {
            "message": body["error"]["message"],
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    assert factory.clients == []


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "assistant", "content": "hi"}], "messages"),
        ([{"role": "user", "content": "  "}], "messages"),
        (
            [
                {"role": "assistant", "content": [{"type": "image_url", "image_url": {}}]},
                {"role": "user", "content": "a"},
            ],
            "messages[0].content[0].type",
        ),
        (
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
            "messages[0].content[0].type",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": 1}]}],
            "messages[0].content[0].text",
        ),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "tool", "content": "r", "tool_call_id": "t"},
            ],
            "messages[1].role",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"id": "t"}]}, {"role": "user", "content": "a"}],
            "messages[0].tool_calls",
        ),
        ([{"role": "robot", "content": "a"}], "messages[0].role"),
        ([], "messages"),
    ],
)
async def test_unusable_messages_are_refused_with_400(tmp_path, settings, messages, param):
    """Messages that cannot become a turn (no final user text, parts other than text
    outside user messages, audio, tool traffic, unknown roles) are a 400 naming the
    offending message or part."""
    async with open_client(tmp_path, settings) as client:
        response = await client.post(PATH, json={**BODY, "messages": messages})
        body = await response.get_json()
    assert response.status_code == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param


async def test_ignored_fields_are_accepted(tmp_path, settings):
    """Sampling and length fields, ``user``, ``store`` and unknown fields are accepted and
    do not change the answer (the CLI chooses them)."""
    ignored = {
        "temperature": 0.2,
        "top_p": 0.5,
        "max_tokens": 1,
        "max_completion_tokens": 1,
        "presence_penalty": 1,
        "frequency_penalty": 1,
        "seed": 7,
        "user": "someone",
        "parallel_tool_calls": False,
        "store": False,
        "service_tier": "auto",
        "n": 1,
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "modalities": ["text"],
        "stop": None,
        "tools": [],
        "web_search_options": None,
        "metadata": {"purpose": "test"},
        "some_vendor_field": True,
    }
    async with open_client(tmp_path, settings) as client:
        response = await client.post(PATH, json={**BODY, **ignored})
        completion = await response.get_json()
    assert response.status_code == 200, completion
    assert completion["choices"][0]["message"]["content"] == "echo: hi #1"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"model": "m"}', 400),
        (b"x" * (Settings().max_body_bytes + 1), 413),
    ],
)
async def test_malformed_bodies_get_openai_errors(tmp_path, settings, data, status):
    """Invalid JSON, a non-object, missing fields and an oversized body are client
    mistakes in OpenAI's error format, never a 500."""
    async with open_client(tmp_path, settings) as client:
        response = await client.post(PATH, data=data, headers={"Content-Type": "application/json"})
        body = await response.get_json()
    assert response.status_code == status
    assert body["error"]["type"] == "invalid_request_error"


async def test_invalid_session_id_is_a_400(tmp_path, settings):
    """A malformed session id, by header or ``metadata.session_id``, is a 400."""
    async with open_client(tmp_path, settings) as client:
        by_header = await client.post(PATH, json=BODY, headers={"X-Session-ID": "a/../b"})
        by_metadata = await client.post(PATH, json={**BODY, "metadata": {"session_id": "x" * 200}})
    for response in (by_header, by_metadata):
        assert response.status_code == 400
        assert (await response.get_json())["error"]["type"] == "invalid_request_error"


async def test_new_session_without_a_live_slot_gets_503_with_retry_after(
    tmp_path, settings, autojump_clock
):
    """When every live slot is busy, a new session waits ``live_slot_wait_s`` for one,
    then is refused with 503 + Retry-After in OpenAI's format, streaming or not (before
    any SSE headers)."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=math.inf))
    async with (
        open_client(tmp_path, settings, factory, max_live_sessions=1, live_slot_wait_s=2) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(lambda: client.post(PATH, json=BODY, headers={"X-Session-ID": "busy"}))
        await trio.testing.wait_all_tasks_blocked()
        for body in (BODY, {**BODY, "stream": True}):
            refused = await client.post(PATH, json=body, headers={"X-Session-ID": "b"})
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) >= 1
            error = (await refused.get_json())["error"]
            assert error["type"] == "server_error"
            assert error["code"] == "server_is_overloaded"
        nursery.cancel_scope.cancel()


async def test_full_mailbox_gets_429_with_retry_after(tmp_path, settings, autojump_clock):
    """More turns than one session's mailbox holds get 429 + Retry-After, OpenAI's
    ``rate_limit_error``."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=math.inf))
    headers = {"X-Session-ID": "busy"}
    async with (
        open_client(tmp_path, settings, factory, mailbox_size=1) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(2):  # one running, one waiting
            nursery.start_soon(lambda: client.post(PATH, json=BODY, headers=headers))
            await trio.testing.wait_all_tasks_blocked()
        refused = await client.post(PATH, json=BODY, headers=headers)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        error = (await refused.get_json())["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        nursery.cancel_scope.cancel()


async def test_failed_turn_is_an_error_response_or_error_chunk_then_done(tmp_path, settings):
    """A turn the upstream fails keeps the upstream's status (529 here) when not
    streaming; mid-stream it ends with a ``data: {"error": ...}`` chunk and ``[DONE]``
    after the text already sent."""
    factory = ScriptedClientFactory(script=lambda p, h: failing_reply("partial", 529))
    async with open_client(tmp_path, settings, factory) as client:
        plain = await client.post(PATH, json=BODY)
        streamed = await client.post(PATH, json={**BODY, "stream": True})
        frames = data_frames(await streamed.get_data())
    assert plain.status_code == 529
    assert (await plain.get_json())["error"] == {
        "message": "upstream says no",
        "type": "server_error",
        "param": None,
        "code": "upstream_error",
    }
    assert streamed.status_code == 200
    assert frames[1]["choices"][0]["delta"] == {"content": "partial"}
    assert frames[-2]["error"]["code"] == "upstream_error"
    assert frames[-1] == "[DONE]"


async def test_quiet_stream_sends_keepalives_until_the_turn_times_out(tmp_path, autojump_clock):
    """While the CLI is silent the stream carries a ``: ping`` comment every
    ``sse_ping_interval_s``; at the first-chunk timeout it ends with a ``timeout`` error
    chunk and ``[DONE]``."""
    settings = Settings(state_dir=tmp_path, sse_ping_interval_s=3)
    policy = ActorPolicy(first_chunk_timeout_s=10)
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=math.inf))
    async with open_client(tmp_path, settings, factory, policy=policy) as client:
        with trio.fail_after(60):
            t0 = trio.current_time()
            response = await client.post(PATH, json={**BODY, "stream": True})
            raw = await response.get_data()
            assert trio.current_time() - t0 == policy.first_chunk_timeout_s
    assert raw.count(b": ping\n\n") == 3  # at 3, 6 and 9 s
    error, done = data_frames(raw)[-2:]
    assert error["error"]["code"] == "timeout"
    assert error["error"]["type"] == "server_error"
    assert done == "[DONE]"


def thinking_then_text(prompt: str, history: object) -> list[Step]:
    """Five thinking deltas 2 s apart, then a text block and a tool-separated second
    text block: what a turn with extended thinking and tool use streams."""

    def block(index: int, kind: str, *deltas: str, delay: float = 0) -> list[Step]:
        start = {"type": "content_block_start", "index": index, "content_block": {"type": kind}}
        field = "thinking" if kind == "thinking" else "text"
        return [
            Step(0, StreamEvent(start)),
            *(
                Step(
                    delay,
                    StreamEvent(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": f"{field}_delta", field: d},
                        }
                    ),
                )
                for d in deltas
            ),
            Step(0, StreamEvent({"type": "content_block_stop", "index": index})),
        ]

    *_, result = text_reply("")
    return [
        *block(0, "thinking", *["hmm"] * 5, delay=2),
        *block(1, "text", "Looking."),
        *block(2, "tool_use"),
        *block(3, "text", "Found", " it."),
        Step(0, AssistantText("Looking.")),
        Step(0, AssistantText("Found it.")),
        result,
    ]


async def test_thinking_is_not_sent_and_does_not_hold_off_keepalives(tmp_path, autojump_clock):
    """Thinking deltas produce no chunk, so ``: ping`` comments keep coming every
    ``sse_ping_interval_s`` while the model thinks; text blocks of one turn are joined
    by a blank line, the same streamed or not."""
    settings = Settings(state_dir=tmp_path, sse_ping_interval_s=3)
    factory = ScriptedClientFactory(script=thinking_then_text)
    with trio.fail_after(60):
        async with open_client(tmp_path, settings, factory) as client:
            t0 = trio.current_time()
            streamed = await client.post(PATH, json={**BODY, "stream": True})
            raw = await streamed.get_data()
            assert trio.current_time() - t0 == 10  # the last thinking delta, then the text
            plain = await (await client.post(PATH, json=BODY)).get_json()
    assert raw.count(b": ping\n\n") == 3  # at 3, 6 and 9 s, although thinking arrived
    assert b"hmm" not in raw
    chunks = [c for c in data_frames(raw) if c != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Looking.\n\nFound it."
    assert plain["choices"][0]["message"]["content"] == text


async def test_session_turn_sends_only_the_new_message_after_opening_instructions(
    tmp_path, settings
):
    """With a session, the first turn sends its system/developer instructions with the
    user message; later turns send only the new user message (the session remembers),
    and the response names the session."""
    factory = ScriptedClientFactory()
    first = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "No jokes."}]},
        {"role": "user", "content": "one"},
    ]
    second = [*first, {"role": "assistant", "content": "echo"}, {"role": "user", "content": "two"}]
    async with open_client(tmp_path, settings, factory) as client:
        for messages in (first, second):
            response = await client.post(
                PATH, json={**BODY, "messages": messages, "metadata": {"session_id": "conv"}}
            )
            assert response.status_code == 200
            assert response.headers["X-Session-ID"] == "conv"
    [session] = factory.clients
    assert session.prompts == [
        "Instructions:\n\nBe brief.\n\nNo jokes.\n\nThe user's new message:\n\none",
        "two",
    ]


async def test_a_new_conversation_gets_instructions_and_history_as_context(tmp_path, settings):
    """A request whose history no session holds starts a new session; instructions and
    earlier messages travel with the new message in one prompt, once."""
    factory = ScriptedClientFactory()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": [{"type": "text", "text": "uno"}]},
        {"role": "user", "content": "two"},
    ]
    async with open_client(tmp_path, settings, factory) as client:
        response = await client.post(PATH, json={**BODY, "messages": messages})
    assert response.status_code == 200
    assert factory.clients[0].prompts == [
        "Instructions:\n\nBe brief.\n\n"
        "The conversation so far:\n\nUser: one\n\nAssistant: uno\n\n"
        "The user's new message:\n\ntwo"
    ]


async def test_models_lists_the_configured_model_and_claude_aliases(tmp_path, settings):
    """``GET /v1/models`` is an OpenAI model list, the server's model first; a listed
    model can be retrieved, an unknown one is a 404 ``model_not_found``."""
    async with open_client(tmp_path, settings) as client:
        listing = await (await client.get("/v1/models")).get_json()
        one = await client.get("/v1/models/sonnet")
        missing = await client.get("/v1/models/gpt-4o")
    assert listing["object"] == "list"
    ids = [m["id"] for m in listing["data"]]
    assert ids[0] == "claude-test-model"
    assert {"claude-sonnet-4-6", "sonnet", "opus", "haiku"} <= set(ids)
    assert all(m["object"] == "model" and m["owned_by"] == "anthropic" for m in listing["data"])
    assert (await one.get_json())["id"] == "sonnet"
    assert missing.status_code == 404
    assert (await missing.get_json())["error"]["code"] == "model_not_found"


async def test_wrong_method_is_405_in_openai_format_and_other_routes_keep_theirs(
    tmp_path, settings
):
    """A GET of the completions path is a 405 in OpenAI's format; the blueprint's error
    handlers leave the Anthropic routes' errors Anthropic-shaped."""
    async with open_client(tmp_path, settings) as client:
        wrong = await client.get(PATH)
        anthropic = await client.post(
            "/v1/messages", data=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"
    assert (await wrong.get_json())["error"]["type"] == "invalid_request_error"
    assert anthropic.status_code == 400
    assert (await anthropic.get_json())["type"] == "error"
