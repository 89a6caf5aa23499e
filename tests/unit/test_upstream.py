"""The offline Anthropic-compatible upstream: pure parsing, then real sockets."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
import trio
from httpx_sse import aconnect_sse

from app.offline._upstream import (
    MAX_REQUEST_BYTES,
    Directives,
    latest_user_text,
    parse_directives,
    serve_upstream,
)
from app.wire._sse import encode_sse

SEQUENCE = [
    "message_start",
    "ping",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
]


def _user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _request(text: str, **fields: Any) -> dict[str, Any]:
    return {"model": "claude-test", "max_tokens": 64, "messages": [_user(_text(text))], **fields}


def _task_count() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        children = (child for nursery in task.child_nurseries for child in nursery.child_tasks)
        return 1 + sum(count(child) for child in children)

    return count(trio.lowlevel.current_root_task())


@pytest.fixture
async def base_url(nursery: trio.Nursery) -> str:
    return await nursery.start(serve_upstream, "127.0.0.1", 0)


def _open_client(base_url: str) -> httpx.AsyncClient:
    # Generous: a 32 MiB body on a loaded two-core machine takes seconds (httpx's default
    # is 5 s); the test's hang guard still bounds it.
    return httpx.AsyncClient(base_url=base_url, timeout=45)


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _open_client(base_url) as client:
        yield client


async def _events(client: httpx.AsyncClient, body: dict[str, Any]) -> list[tuple[str, Any]]:
    async with aconnect_sse(client, "POST", "/v1/messages", json={**body, "stream": True}) as sse:
        return [(event.event, event.json()) async for event in sse.aiter_sse()]


def _deltas(events: list[tuple[str, Any]]) -> list[str]:
    return [data["delta"]["text"] for name, data in events if name == "content_block_delta"]


# Pure functions.


def test_latest_user_text_is_the_last_prompt_block_without_cli_additions() -> None:
    """The prompt is the last text block with text once <system-reminder> sections and
    the CLI's interrupt marker are removed; earlier blocks (reminders, a failed turn's
    prompt merged into this message) do not steer the reply."""
    message = _user(
        _text("<system-reminder>\nctx [[error=500]]\n</system-reminder>"),
        _text("failed turn [[error=400]]"),
        _text("[Request interrupted by user]"),
        _text(" hello <system-reminder>more</system-reminder> [[count]] "),
        _text("<system-reminder>trailing</system-reminder>"),
    )
    assert latest_user_text([message]) == "hello  [[count]]"


def test_latest_user_text_skips_tool_results_system_and_assistant_messages() -> None:
    """A trailing tool_result-only user message defers to the last user text."""
    messages = [
        {"role": "user", "content": "first"},
        _user(_text("prompt")),
        {"role": "system", "content": "Available agent types"},
        {"role": "assistant", "content": [_text("reply")]},
        _user({"type": "tool_result", "tool_use_id": "t1", "content": "ok"}),
    ]
    assert latest_user_text(messages) == "prompt"


def test_latest_user_text_is_empty_without_user_text() -> None:
    """No user text at all gives "" rather than an error, whatever the entries are."""
    assert latest_user_text([]) == ""
    assert latest_user_text(["junk", {"role": "user", "content": 3}]) == ""


def test_parse_directives_reads_every_directive() -> None:
    """Each documented directive is recognised with its value."""
    text = "[[count]] [[chunks=5]] [[chunk_delay=0.5]] [[delay_first=2]] [[stall_after=3]]"
    assert parse_directives(text + " [[error=529]]") == Directives(
        count=True, chunks=5, chunk_delay=0.5, delay_first=2.0, stall_after=3, error=529
    )


def test_parse_directives_ignores_unknown_and_plain_text() -> None:
    """Unknown [[names]] and ordinary text leave the defaults."""
    assert parse_directives("say [[hello]] [[x=1]] [chunks=3]") == Directives()


@pytest.mark.parametrize(
    "text",
    ["[[chunks=abc]]", "[[chunks=0]]", "[[chunks]]", "[[error=200]]", "[[chunk_delay=-1]]"],
)
def test_parse_directives_rejects_malformed_values(text: str) -> None:
    """A known directive with a bad value is an error, not silently ignored."""
    with pytest.raises(ValueError, match=r"\[\["):
        parse_directives(text)


def test_stall_after_without_chunks_stalls_inside_the_reply() -> None:
    """stall_after=N alone streams N+1 pieces, so the stall cuts the reply short."""
    assert parse_directives("[[stall_after=2]]").delta_count == 3
    assert parse_directives("[[stall_after=2]] [[chunks=7]]").delta_count == 7
    assert parse_directives("no directives").delta_count == 1


def test_encode_sse_writes_one_event_frame() -> None:
    """A frame is `event:` and one-line compact JSON `data:`, ended by a blank line."""
    frame = encode_sse("ping", {"type": "ping", "text": "a\nb é"})
    assert frame == 'event: ping\ndata: {"type":"ping","text":"a\\nb é"}\n\n'.encode()


# Real sockets.


async def test_non_streaming_request_gets_an_echo_message(client: httpx.AsyncClient) -> None:
    """A plain request, any auth and query, gets a Message echoing the user text."""
    response = await client.post(
        "/v1/messages?beta=true",
        json=_request("hi there"),
        headers={"x-api-key": "anything", "authorization": "Bearer nope"},
    )
    assert response.status_code == 200
    message = response.json()
    assert message["id"].startswith("msg_")
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == "claude-test"
    assert message["content"] == [{"type": "text", "text": "echo: hi there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == len("echo: hi there") // 4 + 1
    assert message["usage"]["input_tokens"] > 0


async def test_streaming_request_gets_the_anthropic_event_sequence(
    client: httpx.AsyncClient,
) -> None:
    """stream=true yields Anthropic's event sequence with one text block."""
    with trio.fail_after(10):
        events = await _events(client, _request("hello"))
    assert [name for name, _ in events] == SEQUENCE
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["model"] == "claude-test"
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert events[2][1]["content_block"] == {"type": "text", "text": ""}
    assert _deltas(events) == ["echo: hello"]
    assert events[5][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[5][1]["usage"]["output_tokens"] == len("echo: hello") // 4 + 1


@pytest.mark.parametrize("chunks", [5, 100])
async def test_chunks_directive_sends_exactly_that_many_text_deltas(
    client: httpx.AsyncClient, chunks: int
) -> None:
    """[[chunks=N]] gives N deltas that join to the reply, padded with '.' if short."""
    text = f"split [[chunks={chunks}]]"
    with trio.fail_after(10):
        deltas = _deltas(await _events(client, _request(text)))
    assert len(deltas) == chunks
    assert all(deltas)
    assert "".join(deltas) == f"echo: {text}".ljust(chunks, ".")


async def test_count_counts_user_messages_that_contain_count(client: httpx.AsyncClient) -> None:
    """[[count]] counts user texts holding it, ignoring reminders and tool results."""
    messages = [
        _user(_text("<system-reminder>[[count]]</system-reminder>"), _text("one [[count]]")),
        {"role": "system", "content": "[[count]]"},
        {"role": "assistant", "content": [_text("count=1")]},
        _user({"type": "tool_result", "tool_use_id": "t", "content": "[[count]]"}),
        {"role": "assistant", "content": [_text("done")]},
        _user(_text("no directive here")),
        {"role": "assistant", "content": [_text("echo")]},
        {"role": "user", "content": "two [[count]]"},
    ]
    response = await client.post("/v1/messages", json={"model": "m", "messages": messages})
    assert response.json()["content"][0]["text"] == "count=2"


async def test_blocks_names_the_block_types_of_the_prompt(client: httpx.AsyncClient) -> None:
    """[[blocks]] lists the types of the prompt message's blocks, leaving out what the CLI
    adds (reminders; the note where it saved an image, after the prompt's text)."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain"}}
    messages = [
        _user(_text("<system-reminder>x</system-reminder>"), _text("look [[blocks]]"), image),
        {"role": "assistant", "content": [_text("blocks=text,image")]},
        _user(
            _text("<system-reminder>y</system-reminder>"),
            image,
            document,
            _text("and [[blocks]]"),
            _text("[Image: source: /tmp/claude-0/x/images/1.png]"),
        ),
    ]
    response = await client.post("/v1/messages", json={"model": "m", "messages": messages})
    assert response.json()["content"][0]["text"] == "blocks=image,document,text"


async def test_model_and_system_describe_what_the_cli_asked_for(
    client: httpx.AsyncClient,
) -> None:
    """[[model]] answers the request's model; [[system]] the length and the end of its
    system prompt, text blocks joined by blank lines; both together, model first."""
    system = [_text("x-billing-header"), _text("You are Claude Code."), _text("Be terse.")]
    replies = []
    for text in ("[[model]]", "[[system]]", "[[system]] and [[model]]"):
        body = _request(text, model="claude-sonnet-5-5", system=system)
        replies.append((await client.post("/v1/messages", json=body)).json())
    joined = "x-billing-header\n\nYou are Claude Code.\n\nBe terse."
    assert [r["content"][0]["text"] for r in replies] == [
        "model=claude-sonnet-5-5",
        f"system={len(joined)} chars ending: {joined}",
        f"model=claude-sonnet-5-5 system={len(joined)} chars ending: {joined}",
    ]
    long = (await client.post("/v1/messages", json=_request("[[system]]", system="ab" * 80))).json()
    assert long["content"][0]["text"] == "system=160 chars ending: " + "ab" * 50


async def test_media_counts_the_images_and_documents_of_the_prompt(
    client: httpx.AsyncClient,
) -> None:
    """[[media]] counts the image and document blocks of the user message holding it,
    whatever their source (base64, URL, text), and not those of earlier messages."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
    url_image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    url_pdf = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    text_document = {"type": "document", "source": {"type": "text", "media_type": "text/plain"}}
    messages = [
        _user(image, image, _text("first")),
        {"role": "assistant", "content": [_text("ok")]},
        _user(
            _text("<system-reminder>x</system-reminder>"),
            url_image,
            image,
            url_pdf,
            text_document,
            _text("count them [[media]]"),
            _text("[Image: source: /tmp/claude-0/x/images/1.png]"),
        ),
    ]
    response = await client.post("/v1/messages", json={"model": "m", "messages": messages})
    assert response.json()["content"][0]["text"] == "images=2 documents=2"
    text_only = await client.post("/v1/messages", json=_request("none here [[media]]"))
    assert text_only.json()["content"][0]["text"] == "images=0 documents=0"


# When the server answers 413 before it has read the whole body, httpx can leave the
# generator that sends the body unfinished in a reference cycle, and Trio warns when the
# cyclic collector frees it (seen once in CI, where a collection came during the test):
# the test's own client, closed and collected here, so that it is never a later test's.
@pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._content.ByteStream.__aiter__' was garbage collected"
    ":ResourceWarning"
)
async def test_requests_up_to_the_apis_32_mib_are_read_larger_ones_are_413(
    base_url: str,
) -> None:
    """A conversation holding a large PDF is read (Quart's default limit, 16 MiB, would
    refuse it, and Claude Code would report its request too large); past Anthropic's
    32 MiB the answer is the real API's 413 ``request_too_large``."""
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf"}}

    def body(size: int) -> dict[str, Any]:
        document = {**pdf, "source": {**pdf["source"], "data": "A" * size}}
        return {"model": "m", "messages": [_user(document, _text("[[media]]"))]}

    async with _open_client(base_url) as client:
        accepted = await client.post("/v1/messages", json=body(20 * 1024 * 1024))
        assert accepted.json()["content"][0]["text"] == "images=0 documents=1"
        refused = await client.post("/v1/messages", json=body(MAX_REQUEST_BYTES))
        assert refused.status_code == 413
        assert refused.json()["error"]["type"] == "request_too_large"
    gc.collect()


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (529, "overloaded_error"),
        (429, "rate_limit_error"),
        (401, "authentication_error"),
        (418, "api_error"),
    ],
)
async def test_error_directive_answers_with_that_status_and_anthropic_error(
    client: httpx.AsyncClient, status: int, error_type: str
) -> None:
    """[[error=S]] gives HTTP S and {"type":"error","error":{...}}, streaming or not."""
    for stream in (False, True):
        response = await client.post(
            "/v1/messages", json=_request(f"[[error={status}]]", stream=stream)
        )
        assert response.status_code == status
        body = response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == error_type
        assert body["error"]["message"]


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[1, 2]", b'{"model": "m"}', b'{"messages": "hi"}', b"[" * 100_000],
)
async def test_bad_body_gets_400_invalid_request_error(
    client: httpx.AsyncClient, content: bytes
) -> None:
    """A body that is not an object with a messages list is a 400, not a crash."""
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        response = await client.post(path, content=content)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_bad_directive_value_gets_400(client: httpx.AsyncClient) -> None:
    """A malformed directive is reported to the caller as an invalid request."""
    response = await client.post("/v1/messages", json=_request("[[chunks=many]]"))
    assert response.status_code == 400
    assert "chunks" in response.json()["error"]["message"]


async def test_unknown_path_or_method_gets_anthropic_error_json(
    client: httpx.AsyncClient,
) -> None:
    """Anything but the two routes is a 404/405 with an Anthropic error body."""
    response = await client.get("/v1/models")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    response = await client.get("/v1/messages")
    assert response.status_code == 405
    assert response.json()["type"] == "error"


async def test_count_tokens_answers_input_tokens(client: httpx.AsyncClient) -> None:
    """count_tokens gives the same input estimate a message would report."""
    body = _request("some words to count")
    counted = await client.post("/v1/messages/count_tokens", json=body)
    message = await client.post("/v1/messages", json=body)
    assert counted.status_code == 200
    assert counted.json() == {"input_tokens": message.json()["usage"]["input_tokens"]}


async def test_delays_hold_back_the_first_event_and_space_the_deltas(
    client: httpx.AsyncClient,
) -> None:
    """delay_first precedes message_start; chunk_delay separates consecutive deltas."""
    body = _request("[[delay_first=0.3]] [[chunks=3]] [[chunk_delay=0.2]]", stream=True)
    arrivals: list[tuple[str, float]] = []
    with trio.fail_after(10):
        t0 = trio.current_time()
        async with aconnect_sse(client, "POST", "/v1/messages", json=body) as sse:
            async for event in sse.aiter_sse():
                arrivals.append((event.event, trio.current_time() - t0))
    times = dict(arrivals)
    deltas = [at for name, at in arrivals if name == "content_block_delta"]
    assert times["message_start"] >= 0.3
    assert len(deltas) == 3
    assert deltas[1] - deltas[0] >= 0.15
    assert deltas[2] - deltas[1] >= 0.15


async def test_stalled_stream_goes_silent_and_is_freed_when_the_client_leaves(
    base_url: str,
) -> None:
    """[[stall_after=2]] sends 2 deltas then nothing; a disconnect ends the server side."""
    body = _request("[[stall_after=2]]", stream=True)
    baseline = _task_count()
    events: list[str] = []
    with trio.fail_after(10):
        async with (
            httpx.AsyncClient(base_url=base_url) as client,
            aconnect_sse(client, "POST", "/v1/messages", json=body) as sse,
        ):
            stream = sse.aiter_sse()
            while events.count("content_block_delta") < 2:
                events.append((await anext(stream)).event)
            with trio.move_on_after(1) as quiet:
                events.append((await anext(stream)).event)
            assert quiet.cancelled_caught, f"unexpected event after stall: {events[-1]}"
        assert events == SEQUENCE[:3] + ["content_block_delta"] * 2
        # Nothing signals that the server's connection tasks have ended: poll the task tree.
        while _task_count() > baseline:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_structured_output_gets_schema_json_and_ignores_turn_directives(
    client: httpx.AsyncClient,
) -> None:
    """The CLI's title request gets {"title": ...} at once even if the prompt errors."""
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["title"],
    }
    output_config = {"format": {"type": "json_schema", "schema": schema}}
    body = _request("t [[count]] [[error=529]] [[stall_after=0]]", output_config=output_config)
    with trio.fail_after(10):
        deltas = _deltas(await _events(client, body))
    assert json.loads("".join(deltas)) == {"title": "count=1", "n": 0}


async def test_official_anthropic_client_streams_the_reply(base_url: str) -> None:
    """AsyncAnthropic (under Trio) streams the text and reads usage from the upstream."""
    with trio.fail_after(10):
        async with (
            anthropic.AsyncAnthropic(base_url=base_url, api_key="dummy") as api,
            api.messages.stream(**_request("hi [[chunks=3]]")) as stream,
        ):
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert len(pieces) == 3
    assert "".join(pieces) == "echo: hi [[chunks=3]]"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len("echo: hi [[chunks=3]]") // 4 + 1


async def test_tool_directive_calls_the_tool_then_answers_its_result(
    client: httpx.AsyncClient,
) -> None:
    """[[tool=NAME:{...}]] answers with a tool_use block; once the request carries the
    tool_result, the answer is its text (or the error, if the tool was denied)."""
    prompt = 'write it [[tool=Write:{"file_path": "a.txt", "content": "hi"}]]'
    first = await client.post(
        "/v1/messages", json={"model": "m", "messages": [{"role": "user", "content": prompt}]}
    )
    message = first.json()
    assert message["stop_reason"] == "tool_use"
    (block,) = message["content"]
    assert (block["type"], block["name"]) == ("tool_use", "Write")
    assert block["input"] == {"file_path": "a.txt", "content": "hi"}
    for is_error, expected in ((False, "tool result: done"), (True, "tool error: denied")):
        result = {
            "type": "tool_result",
            "tool_use_id": block["id"],
            "content": "denied" if is_error else "done",
            "is_error": is_error,
        }
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": [block]},
            {"role": "user", "content": [result]},
        ]
        second = await client.post("/v1/messages", json={"model": "m", "messages": messages})
        assert second.json()["content"][0]["text"] == expected
    async with aconnect_sse(
        client,
        "POST",
        "/v1/messages",
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": prompt}]},
    ) as source:
        events = [json.loads(sse.data) async for sse in source.aiter_sse()]
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert [d["type"] for d in deltas] == ["input_json_delta"]
    assert json.loads(deltas[0]["partial_json"]) == block["input"]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
