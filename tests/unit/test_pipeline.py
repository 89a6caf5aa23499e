"""The turn pipeline's promises, the same for every front end: keep-alive timed from the
last byte written (also while a turn only runs tools), the same error for the same bad
request on both HTTP APIs, and the same prompt for the same conversation.

Keep-alive tests use real sockets (hypercorn on port 0, configured by
``hypercorn_config``) with short settings and generous hang guards; the others use the
quart test client over the scripted fake client.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
import wsproto
import wsproto.events

from actors import SupervisorConfig, open_supervisor
from actors._client import ToolCall, ToolOutput
from actors.testing import ScriptedClientFactory, Step, text_reply
from app._settings import Settings
from app.http import create_app
from app.http._pipeline import HEAD_HOLD_S

from .serving import serving

GUARD_S = 30
PING_S = 0.4
TOOL_GAP_S = 0.25
TOOLS = 8  # 2 s of tools: five ping intervals without a byte the APIs would show
SLACK_S = 0.4  # scheduling and network on a busy two-core machine

ANTHROPIC_BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
OPENAI_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def tools_then_text(prompt: str, history: Sequence[str]) -> list[Step]:
    """A turn that only runs Claude Code's tools for ``TOOLS * TOOL_GAP_S`` seconds
    (tool calls and results, which no HTTP API shows), then answers ``done``."""
    steps = []
    for n in range(TOOLS):
        steps.append(Step(TOOL_GAP_S, ToolCall(f"toolu_{n}", "Bash", {"command": "true"})))
        steps.append(Step(0, ToolOutput(f"toolu_{n}", "ok", is_error=False)))
    return [*steps, *text_reply("done")]


async def timed_chunks(url: str, body: dict) -> list[tuple[float, bytes]]:
    """POST a streaming request; the time its response's head (status and headers)
    arrived, with an empty chunk, then each chunk of the body as it arrives, with its
    time."""
    async with (
        httpx.AsyncClient(timeout=GUARD_S) as client,
        client.stream("POST", url, json=body) as response,
    ):
        assert response.status_code == 200
        chunks = [(trio.current_time(), b"")]
        async for chunk in response.aiter_raw():
            chunks.append((trio.current_time(), chunk))
    return chunks


def assert_pinged_while_tools_ran(chunks: list[tuple[float, bytes]], ping: bytes) -> None:
    """No gap between two writes is longer than the ping interval (plus slack), and
    pings went out while the tools ran."""
    times = [t for t, _ in chunks]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The tools did take that long (less one gap: the first chunk may be read late).
    assert times[-1] - times[0] >= (TOOLS - 1) * TOOL_GAP_S
    assert max(gaps) < PING_S + SLACK_S, gaps
    body = b"".join(chunk for _, chunk in chunks)
    assert body.count(ping) >= (TOOLS * TOOL_GAP_S) // PING_S - 1, body


@pytest.mark.parametrize(
    ("path", "body", "ping"),
    [
        ("/v1/messages", ANTHROPIC_BODY, b"event: ping\n"),
        ("/v1/chat/completions", OPENAI_BODY, b": ping\n\n"),
    ],
    ids=["anthropic", "openai"],
)
async def test_turn_that_only_runs_tools_still_writes_a_ping_every_interval(
    tmp_path, path, body, ping
):
    """A streaming turn busy with Claude Code's tools writes no bytes for them, and the
    keep-alive counts from the last byte written: a ping goes out within every
    ``sse_ping_interval_s``, on both HTTP APIs (tool events do not restart the timer)."""
    settings = Settings(state_dir=tmp_path, port=0, sse_ping_interval_s=PING_S)
    factory = ScriptedClientFactory(script=tools_then_text)
    with trio.fail_after(GUARD_S):
        async with serving(settings, factory) as url:
            chunks = await timed_chunks(url + path, {**body, "stream": True})
    assert b"done" in b"".join(chunk for _, chunk in chunks)
    assert_pinged_while_tools_ran(chunks, ping)


@pytest.mark.parametrize(
    ("path", "body", "start"),
    [
        ("/v1/messages", ANTHROPIC_BODY, b"event: message_start\n"),
        ("/v1/chat/completions", OPENAI_BODY, b'"role":"assistant"'),
    ],
    ids=["anthropic", "openai"],
)
async def test_the_stream_starts_with_its_first_text_in_one_write(tmp_path, path, body, start):
    """While the CLI works on the prompt nothing is written after the HTTP head: the
    stream's start (``message_start``, the role chunk) goes out with the first text, in
    the same write, not on its own beside the CLI (on 2 cores that write and the
    client's read of it slowed the CLI, see docs/reference/benchmarks.md)."""
    settings = Settings(state_dir=tmp_path, port=0, sse_ping_interval_s=GUARD_S)
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("hello", first_delay=0.3))
    with trio.fail_after(GUARD_S):
        async with serving(settings, factory) as url:
            chunks = await timed_chunks(url + path, {**body, "stream": True})
    (_, head), (_, first), *_ = chunks
    assert head == b""
    assert start in first and b"hello" in first, first
    assert b"".join(chunk for _, chunk in chunks).count(start) == 1


@dataclass
class Sent:
    at: float
    message: dict
    prompts: int  # prompts the CLI had taken when this was sent


async def post_streaming(app: Any, factory: ScriptedClientFactory, body: dict) -> list[Sent]:
    """POST ``body`` (streamed) to ``/v1/messages`` of the ASGI ``app``, in-process; every
    message the app sends, with its trio time and the prompts its CLI had by then."""
    payload = json.dumps({**body, "stream": True}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8765),
        "extensions": {},
    }
    requested, ended, sent = False, trio.Event(), []

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        prompts = sum(len(client.sent) for client in factory.clients)
        sent.append(Sent(trio.current_time(), message, prompts))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            ended.set()

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("set_model_delay", "head_prompts"), [(0.0, 1), (1.0, 0)], ids=["warm", "waiting"]
)
async def test_a_streams_head_goes_out_once_its_prompt_is_with_the_cli(
    tmp_path, autojump_clock, set_model_delay, head_prompts
):
    """The HTTP head (status and headers) of a streamed turn is sent once the turn's
    prompt has reached the CLI: sent before it, its write and the client's read of it
    delayed the prompt on 2 cores (docs/reference/benchmarks.md). A turn that cannot
    send its prompt yet (here its CLI takes a second to switch to the turn's model) gets
    its head ``HEAD_HOLD_S`` after it was queued all the same, and its answer later."""
    factory = ScriptedClientFactory(set_model_delay=set_model_delay)
    settings = Settings(state_dir=tmp_path)
    async with open_supervisor(SupervisorConfig(workspace_root=tmp_path), factory) as sup:
        started = trio.current_time()
        sent = await post_streaming(create_app(sup, settings), factory, ANTHROPIC_BODY)
    head = next(s for s in sent if s.message["type"] == "http.response.start")
    assert head.message["status"] == 200
    assert head.prompts == head_prompts
    if set_model_delay:
        assert head.at - started == pytest.approx(HEAD_HOLD_S, abs=0.01)
    else:
        assert head.at - started < HEAD_HOLD_S
    body = b"".join(s.message.get("body", b"") for s in sent)
    assert b'"text":"echo: hi #1"' in body and b"event: message_stop" in body, body


@pytest.mark.parametrize(
    ("deltas", "chunk_delay"), [(60, 0.0005), (2000, 0.0)], ids=["burst", "dense"]
)
async def test_a_burst_of_deltas_goes_out_in_few_writes_and_all_of_it(
    tmp_path, deltas, chunk_delay
):
    """Deltas that come faster than ``COALESCE_S`` apart are written together: a burst
    of 60 deltas half a millisecond apart takes far fewer writes than deltas, and every
    delta arrives, in order. So does a dense stream (2,000 deltas as fast as the actor
    relays them), which fills the caller's event buffer while the writer sleeps out its
    windows; the turn still ends."""
    settings = Settings(state_dir=tmp_path, port=0)
    factory = ScriptedClientFactory(
        script=lambda prompt, history: text_reply(
            "".join(f"<{n}>" for n in range(deltas)), chunks=deltas, chunk_delay=chunk_delay
        )
    )
    with trio.fail_after(GUARD_S):
        async with serving(settings, factory) as url:
            chunks = await timed_chunks(url + "/v1/messages", {**ANTHROPIC_BODY, "stream": True})
    body = b"".join(chunk for _, chunk in chunks)
    texts = [
        json.loads(line[6:])["delta"]["text"]
        for line in body.splitlines()
        if line.startswith(b"data: ") and b'"text_delta"' in line
    ]
    assert "".join(texts) == "".join(f"<{n}>" for n in range(deltas))
    events = [line for line in body.splitlines() if line.startswith(b"event: ")]
    assert events[-1] == b"event: message_stop", events[-3:]
    writes_with_text = sum(b'"text_delta"' in chunk for _, chunk in chunks)
    assert writes_with_text <= deltas // 3, writes_with_text


async def test_websocket_turn_that_only_runs_tools_still_gets_protocol_pings(tmp_path):
    """On a WebSocket, hypercorn pings every ``ws_ping_interval_s`` whatever the session
    does: a turn that only runs tools (and whose tool events the client does see) still
    has a protocol ping within every interval."""
    settings = Settings(state_dir=tmp_path, port=0, ws_ping_interval_s=PING_S)
    factory = ScriptedClientFactory(script=tools_then_text)
    pings: list[float] = []
    with trio.fail_after(GUARD_S):
        async with serving(settings, factory) as url:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
                request = wsproto.events.Request(host=host, target="/v1/sessions/tools/ws")
                await stream.send_all(ws.send(request))
                sent, started, finished = False, None, None
                while finished is None:
                    ws.receive_data(await stream.receive_some())
                    for event in ws.events():
                        match event:
                            case wsproto.events.AcceptConnection() if not sent:
                                turn = json.dumps({"type": "turn", "content": "go"})
                                await stream.send_all(ws.send(wsproto.events.TextMessage(turn)))
                                sent = True
                            case wsproto.events.Ping():
                                pings.append(trio.current_time())
                                await stream.send_all(ws.send(event.response()))
                            case wsproto.events.TextMessage():
                                kind = json.loads(event.data)["type"]
                                if kind == "turn_started":
                                    started = trio.current_time()
                                elif kind == "turn_completed":
                                    finished = trio.current_time()
    assert started is not None
    assert finished - started >= (TOOLS - 1) * TOOL_GAP_S  # turn_started may be read late
    during = [started, *(t for t in pings if started < t < finished), finished]
    gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
    assert len(during) > 2 and max(gaps) < PING_S + SLACK_S, (pings, started, finished)


# -- The same request through both HTTP APIs ------------------------------------------


@asynccontextmanager
async def open_client(tmp_path, settings, factory) -> AsyncIterator:
    """A quart test client of ``create_app`` over a supervisor with ``factory``."""
    config = SupervisorConfig(workspace_root=tmp_path, mailbox_size=1)
    async with open_supervisor(config, factory) as supervisor:
        yield create_app(supervisor, settings).test_client()


def both(messages: list[dict], **fields) -> list[tuple[str, dict]]:
    """The same request on both HTTP APIs: (path, body)."""
    return [
        ("/v1/messages", {**ANTHROPIC_BODY, "messages": messages, **fields}),
        ("/v1/chat/completions", {**OPENAI_BODY, "messages": messages, **fields}),
    ]


BAD_REQUESTS = {
    "last message from the assistant": (
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        {},
        {},
    ),
    "last user message without text": ([{"role": "user", "content": ""}], {}, {}),
    "too many messages": ([{"role": "user", "content": "hi"}] * 3, {}, {}),
    "prompt too long": ([{"role": "user", "content": "x" * 101}], {}, {}),
    "invalid session id": (
        [{"role": "user", "content": "hi"}],
        {},
        {"X-Session-ID": "not a valid id!"},
    ),
    "invalid session id in metadata": (
        [{"role": "user", "content": "hi"}],
        {"metadata": {"session_id": "../../etc"}},
        {},
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
async def test_the_same_bad_request_gets_the_same_status_and_error_type_on_both_apis(
    tmp_path, case
):
    """A request the pipeline refuses is refused the same way by the Anthropic and the
    OpenAI front end: the same status and the same error type (each in its own JSON)."""
    messages, fields, headers = BAD_REQUESTS[case]
    settings = Settings(state_dir=tmp_path, max_messages=2, max_prompt_chars=100)
    answers = []
    async with open_client(tmp_path, settings, ScriptedClientFactory()) as client:
        for path, body in both(messages, **fields):
            response = await client.post(path, json=body, headers=headers)
            answers.append((response.status_code, (await response.get_json())["error"]["type"]))
    assert answers[0] == answers[1] == (400, "invalid_request_error"), answers


async def test_the_same_body_declared_as_text_gets_415_on_both_apis(tmp_path):
    """A body not declared JSON is 415 ``invalid_request_error`` on both HTTP APIs."""
    answers = []
    async with open_client(tmp_path, Settings(state_dir=tmp_path), ScriptedClientFactory()) as c:
        for path, body in both([{"role": "user", "content": "hi"}]):
            response = await c.post(
                path, data=json.dumps(body), headers={"Content-Type": "text/plain"}
            )
            answers.append((response.status_code, (await response.get_json())["error"]["type"]))
    assert answers[0] == answers[1] == (415, "invalid_request_error"), answers


async def test_a_refused_turn_gets_the_same_status_and_retry_after_on_both_apis(
    tmp_path, autojump_clock
):
    """A turn refused because its session's mailbox is full is 429 with ``Retry-After``
    on both HTTP APIs."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=10))
    answers = []
    async with open_client(tmp_path, Settings(state_dir=tmp_path), factory) as client:
        for path, body in both([{"role": "user", "content": "hi"}]):
            headers = {"X-Session-ID": f"busy-{len(answers)}"}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(client.post, path, json=body, headers=headers))
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(functools.partial(client.post, path, json=body, headers=headers))
                await trio.testing.wait_all_tasks_blocked()
                response = await client.post(path, json=body, headers=headers)
                answers.append(
                    (response.status_code, response.headers.get("Retry-After") is not None)
                )
                nursery.cancel_scope.cancel()
    assert answers[0] == answers[1] == (429, True), answers


async def test_stateless_request_with_history_and_system_gives_the_same_prompt_on_both_apis(
    tmp_path,
):
    """Without a session id, the same conversation (instructions, earlier turns, a new
    user message) becomes the same one-turn prompt through both HTTP APIs: the
    Anthropic ``system`` field is kept even though the history has an assistant reply,
    as the OpenAI ``system`` message is."""
    history = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one"},
        {"role": "user", "content": "two"},
    ]
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, Settings(state_dir=tmp_path), factory) as client:
        anthropic = await client.post(
            "/v1/messages", json={**ANTHROPIC_BODY, "system": "Be brief.", "messages": history}
        )
        openai = await client.post(
            "/v1/chat/completions",
            json={
                **OPENAI_BODY,
                "messages": [{"role": "system", "content": "Be brief."}, *history],
            },
        )
        assert (anthropic.status_code, openai.status_code) == (200, 200)
    first, second = factory.clients
    assert (
        first.prompts
        == second.prompts
        == [
            "Instructions:\n\nBe brief.\n\n"
            "The conversation so far:\n\nUser: one\n\nAssistant: echo: one\n\n"
            "The user's new message:\n\ntwo"
        ]
    )
