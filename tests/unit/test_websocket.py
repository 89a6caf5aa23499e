"""WebSocket sessions over real sockets (hypercorn on port 0, the trio-websocket client),
with the scripted fake client instead of the CLI.

Real sockets mean real time: scripts use short delays and every test has a hang guard.
"""

from __future__ import annotations

import functools
import io
import math
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import hypercorn.config
import hypercorn.trio
import pytest
import trio
from rich.console import Console

from actors import ActorPolicy, Supervisor, SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory, echo_script, text_reply
from app._settings import PROJECT_ROOT, Settings
from app.client._chat import chat
from app.client._ws_client import (
    SessionClient,
    SessionRejectedError,
    open_session_client,
    session_ws_url,
)
from app.http._app import create_app
from app.http._websocket import websocket_blueprint
from app.wire._websocket import parse_client_message

GUARD_S = 10


@dataclass
class Served:
    supervisor: Supervisor
    url: str


@asynccontextmanager
async def serving(tmp_path, factory: ScriptedClientFactory, **config) -> AsyncIterator[Served]:
    """The app (with the WebSocket blueprint) on hypercorn at a free port."""
    settings = Settings(state_dir=tmp_path)
    supervisor_config = SupervisorConfig(workspace_root=tmp_path / "workspaces", **config)
    async with open_supervisor(supervisor_config, factory) as supervisor:
        app = create_app(supervisor, settings)
        if "websocket" not in app.blueprints:
            app.register_blueprint(websocket_blueprint(supervisor, settings))
        http = hypercorn.config.Config()
        http.bind = ["127.0.0.1:0"]
        http.graceful_timeout = 0.5
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn.trio.serve, app, http)
            yield Served(supervisor, binds[0])
            nursery.cancel_scope.cancel()


def slow_for(prompt: str):
    """A script answering ``prompt`` slowly (50 chunks, 0.1 s apart), others by echo."""

    def script(p, history):
        if p == prompt:
            return text_reply("x" * 50, chunks=50, chunk_delay=0.1)
        return echo_script(p, history)

    return script


async def frames_until_final(client: SessionClient, count: int = 1) -> list[dict]:
    """Frames up to and including the ``count``-th turn_completed or turn_failed."""
    frames = []
    while count:
        frames.append(frame := await client.receive())
        count -= frame["type"] in ("turn_completed", "turn_failed")
    return frames


def text_of(frames: list[dict], turn_id: str) -> str:
    return "".join(
        f["text"] for f in frames if f["type"] == "text_delta" and f["turn_id"] == turn_id
    )


async def test_turn_streams_its_events_in_order_ending_with_turn_completed(tmp_path):
    """A turn sent over a WebSocket is acknowledged with its turn id, then its events
    arrive in order: turn_started, text deltas, turn_completed with usage and cost."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("one two", chunks=2))
    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, factory) as served,
            open_session_client(served.url, "ws-1") as client,
        ):
            assert client.session == {
                "type": "session",
                "id": "ws-1",
                "exists": False,
                "state": None,
                "live": False,
            }
            await client.send_turn("hi", id="c1")
            frames = await frames_until_final(client)
    accepted, *events = frames
    assert accepted == {"type": "turn_accepted", "turn_id": accepted["turn_id"], "id": "c1"}
    turn_id = accepted["turn_id"]
    assert [f["type"] for f in events] == [
        "turn_started",
        "text_delta",
        "text_delta",
        "turn_completed",
    ]
    assert all(f["turn_id"] == turn_id for f in events)
    assert events[0]["session_id"] == "ws-1"
    assert text_of(events, turn_id) == "one two"
    done = events[-1]
    assert done["stop_reason"] == "end_turn"
    assert done["usage"]["output_tokens"] == 2
    assert done["total_cost_usd"] == 0.0


async def test_clients_on_one_session_see_every_turn_exactly_once(tmp_path):
    """Two clients connected before their session exists both see a turn sent by either
    one, in the same order, each event exactly once; only the sender gets turn_accepted."""
    factory = ScriptedClientFactory()
    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, factory) as served,
            open_session_client(served.url, "shared") as a,
            open_session_client(served.url, "shared") as b,
        ):
            await a.send_turn("from a")
            seen_a = await frames_until_final(a)
            seen_b = await frames_until_final(b)
            await b.send_turn("from b")
            seen_b += await frames_until_final(b)
            seen_a += await frames_until_final(a)
            for client in (a, b):  # nothing else is on its way: no late duplicate
                await client.interrupt()
                assert (await client.receive())["type"] == "interrupt_result"
    first = seen_a[0]["turn_id"]
    second = next(f["turn_id"] for f in seen_b if f["type"] == "turn_accepted")
    events_a = [f for f in seen_a if f["type"] != "turn_accepted"]
    events_b = [f for f in seen_b if f["type"] != "turn_accepted"]
    assert events_a == events_b
    assert [(f["type"], f["turn_id"]) for f in events_a] == [
        ("turn_started", first),
        ("text_delta", first),
        ("turn_completed", first),
        ("turn_started", second),
        ("text_delta", second),
        ("turn_completed", second),
    ]
    assert text_of(events_a, first) == "echo: from a #1"
    assert text_of(events_a, second) == "echo: from b #2"
    assert [f["type"] for f in seen_a].count("turn_accepted") == 1
    assert [f["type"] for f in seen_b].count("turn_accepted") == 1


async def test_interrupt_message_stops_the_running_turn(tmp_path):
    """An interrupt message ends the running turn with turn_failed (interrupted) long
    before it would have completed, and the session answers its next turn."""
    factory = ScriptedClientFactory(script=slow_for("long"))
    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, factory) as served,
            open_session_client(served.url, "ws-int") as client,
        ):
            await client.send_turn("long")
            started = trio.current_time()
            frames = [await client.receive()]
            while frames[-1]["type"] != "text_delta":
                frames.append(await client.receive())
            await client.interrupt()
            frames += await frames_until_final(client)
            elapsed = trio.current_time() - started
            results = [f for f in frames if f["type"] == "interrupt_result"]
            assert results == [{"type": "interrupt_result", "interrupted": True}]
            failed = frames[-1]
            assert failed["type"] == "turn_failed"
            assert failed["reason"] == "interrupted"
            assert elapsed < 3  # the whole answer takes 4.9 s
            after = [f async for f in client.stream_turn("after")]
    assert after[-1]["type"] == "turn_completed"
    assert text_of(after, after[0]["turn_id"]) == "echo: after #2"


async def test_client_going_away_interrupts_its_turn(tmp_path):
    """A client that closes its connection while its turn runs interrupts the turn
    (on_disconnect=interrupt): another client on the session sees it fail, and the
    session, on the same CLI, answers its next turn."""
    factory = ScriptedClientFactory(script=slow_for("long"))
    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, factory) as served,
            open_session_client(served.url, "ws-gone") as watcher,
        ):
            async with open_session_client(served.url, "ws-gone") as sender:
                await sender.send_turn("long")
                while (await sender.receive())["type"] != "text_delta":
                    pass
            frames = await frames_until_final(watcher)
            after = [f async for f in watcher.stream_turn("next")]
    assert frames[-1]["type"] == "turn_failed"
    assert frames[-1]["reason"] == "interrupted"
    assert text_of(after, after[0]["turn_id"]) == "echo: next #2"
    assert len(factory.clients) == 1  # the same CLI, interrupted, not replaced


async def test_bad_messages_get_error_frames_and_the_connection_stays_usable(tmp_path):
    """Malformed JSON, binary frames, unknown types, missing fields and a malformed
    model name each get an invalid_request_error frame (with the message's id when it had
    one); the connection then serves a turn as usual."""
    factory = ScriptedClientFactory()
    bad = [
        "not json",
        b"\x00binary",
        b"",
        '["a list"]',
        '{"type": "dance", "id": "x1"}',
        '{"type": "turn", "id": "x2"}',
        '{"type": "turn", "content": "hi", "extra": 1}',
        '{"type": "turn", "content": "hi", "model": "claude opus", "id": "x3"}',
    ]
    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, factory) as served,
            open_session_client(served.url, "ws-bad") as client,
        ):
            errors = []
            for message in bad:
                await client._ws.send_message(message)
                errors.append(await client.receive())
            frames = [f async for f in client.stream_turn("still here")]
    assert [e["type"] for e in errors] == ["error"] * len(bad)
    assert {e["error"]["type"] for e in errors} == {"invalid_request_error"}
    assert [e.get("id") for e in errors] == [None, None, None, None, "x1", "x2", None, "x3"]
    assert "not valid JSON" in errors[0]["error"]["message"]
    assert "binary" in errors[1]["error"]["message"]
    assert "binary" in errors[2]["error"]["message"]
    assert "content" in errors[5]["error"]["message"]
    assert "not a model name" in errors[7]["error"]["message"]
    assert frames[-1]["type"] == "turn_completed"
    assert factory.clients[0].prompts == ["still here"]


async def test_a_turn_may_name_its_model(tmp_path):
    """A turn's ``model`` switches the session's CLI before it (the session stays on it:
    a turn without one runs on it too); the completion names the model that answered."""
    factory = ScriptedClientFactory()
    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, factory) as served,
            open_session_client(served.url, "ws-model") as client,
        ):
            first = [f async for f in client.stream_turn("one", model="opus")]
            second = [f async for f in client.stream_turn("two")]
    assert first[-1]["type"] == second[-1]["type"] == "turn_completed"
    assert first[-1]["model"] == second[-1]["model"] == "opus"
    assert factory.clients[0].set_model_calls == ["opus"]


async def test_refused_turn_gets_an_error_frame_with_retry_after(tmp_path):
    """A turn beyond the session's mailbox gets a rate_limit_error frame with
    retry_after_s; the connection stays open and interrupt still works."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=math.inf))
    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, factory, mailbox_size=1) as served,
            open_session_client(served.url, "ws-full") as client,
        ):
            await client.send_turn("running")
            assert (await client.receive())["type"] == "turn_accepted"
            assert (await client.receive())["type"] == "turn_started"
            await client.send_turn("waiting", id="w")
            assert (await client.receive())["type"] == "turn_accepted"
            await client.send_turn("refused", id="r")
            refused = await client.receive()
            await client.interrupt()
            frames = await frames_until_final(client)
    assert refused["type"] == "error"
    assert refused["id"] == "r"
    assert refused["error"]["type"] == "rate_limit_error"
    assert refused["error"]["retry_after_s"] >= 1
    assert {"type": "interrupt_result", "interrupted": True} in frames
    assert frames[-1]["reason"] == "interrupted"


async def test_turn_failing_before_it_starts_is_reported_to_its_sender(tmp_path):
    """When a session closes (restart intensity exceeded) with a turn still waiting,
    that turn's turn_failed (session_closed) reaches its sender although it never
    started; the next turn starts a new session that every connection follows again."""

    def script(p, history):
        return text_reply("x", first_delay=math.inf) if p == "hang" else echo_script(p, history)

    factory = ScriptedClientFactory(script=script)
    policy = ActorPolicy(first_chunk_timeout_s=0.3, max_restarts=0)
    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, factory, policy=policy) as served,
            open_session_client(served.url, "ws-closing") as client,
            open_session_client(served.url, "ws-closing") as watcher,
        ):
            await client.send_turn("hang")
            hung = (await client.receive())["turn_id"]
            assert (await client.receive())["type"] == "turn_started"
            await client.send_turn("queued")
            queued = (await client.receive())["turn_id"]
            frames = await frames_until_final(client, 2)
            watched = await frames_until_final(watcher, 1)
            after = [f async for f in client.stream_turn("again")]
            watched_after = await frames_until_final(watcher, 1)
    failures = {f["turn_id"]: f["reason"] for f in frames if f["type"] == "turn_failed"}
    assert failures == {hung: "timeout", queued: "session_closed"}
    assert [f["type"] for f in watched] == ["turn_started", "turn_failed"]
    assert after[-1]["type"] == "turn_completed"
    assert text_of(after, after[0]["turn_id"]) == "echo: again #1"  # a new conversation
    assert [f["type"] for f in watched_after] == [
        "turn_started",
        "text_delta",
        "turn_completed",
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_connection_open_before_http_starts_the_session_sees_its_first_turn_whole(
    tmp_path, stream
):
    """A connection opened before its session exists, when an HTTP request
    (``POST /v1/messages`` with ``X-Session-ID``) starts the session, sees that first
    turn's events from ``turn_started`` to ``turn_completed``, and then the next turn in
    full. (Several sessions, since the order of tasks within a scheduling step varies.)"""
    factory = ScriptedClientFactory()
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with trio.fail_after(GUARD_S):
        async with serving(tmp_path, factory) as served, httpx.AsyncClient() as http:
            for n in range(5):
                session_id = f"ws-http-{n}"
                headers = {"X-Session-ID": session_id}
                async with open_session_client(served.url, session_id) as client:
                    assert client.session["exists"] is False
                    for _ in range(2):
                        response = await http.post(
                            f"{served.url}/v1/messages",
                            json={**body, "stream": stream},
                            headers=headers,
                        )
                        assert response.status_code == 200
                    frames = await frames_until_final(client, 2)
                first, second = frames[:3], frames[3:]
                assert [f["type"] for f in first] == [
                    "turn_started",
                    "text_delta",
                    "turn_completed",
                ], session_id
                assert text_of(first, first[0]["turn_id"]) == "echo: hi #1"
                assert [f["type"] for f in second] == [
                    "turn_started",
                    "text_delta",
                    "turn_completed",
                ]
                assert text_of(second, second[0]["turn_id"]) == "echo: hi #2"


@pytest.mark.parametrize("session_id", ["bad id!", "x" * 129, "ü"])
async def test_invalid_session_id_is_closed_with_1008_and_the_reason(tmp_path, session_id):
    """A connection to an invalid session id is closed with code 1008 (policy) and
    a reason (after an error frame), never a server error."""
    with trio.fail_after(GUARD_S):
        async with serving(tmp_path, ScriptedClientFactory()) as served:
            with pytest.raises(SessionRejectedError) as refused:
                async with open_session_client(served.url, session_id):
                    pass
    assert refused.value.code == 1008
    assert "invalid session id" in refused.value.message


def test_session_urls_use_the_websocket_scheme_and_encode_the_id():
    """http becomes ws, https wss, a base path is kept and the id is percent-encoded."""
    assert session_ws_url("http://h:1", "a b") == "ws://h:1/v1/sessions/a%20b/ws"
    assert session_ws_url("https://h/base/", "s") == "wss://h/base/v1/sessions/s/ws"
    assert session_ws_url("ws://h", "s") == "ws://h/v1/sessions/s/ws"


def test_client_messages_parse_to_their_models():
    """turn and interrupt parse; model and id are kept for the route to judge."""
    turn = parse_client_message('{"type": "turn", "content": "hi", "id": "1"}')
    assert (turn.type, turn.content, turn.id, turn.model) == ("turn", "hi", "1", None)
    assert parse_client_message('{"type": "interrupt"}').type == "interrupt"


async def test_chat_prints_each_reply_as_it_streams(tmp_path):
    """chat() sends each non-blank line as a turn and prints its reply and usage."""
    lines = iter(["hello", " ", "again", None])
    output = io.StringIO()
    console = Console(file=output, width=200)

    async def read_line():
        await trio.lowlevel.checkpoint()
        return next(lines)

    with trio.fail_after(GUARD_S):
        async with (
            serving(tmp_path, ScriptedClientFactory()) as served,
            open_session_client(served.url, "chat-1") as client,
        ):
            await chat(client, console, read_line)
    printed = output.getvalue()
    assert "claude> echo: hello #1\n" in printed
    assert "claude> echo: again #2\n" in printed
    assert printed.count("(1 in, 1 out)") == 2


async def test_chat_command_streams_and_ctrl_c_interrupts_a_reply(tmp_path):
    """run_chat in its own process: a reply streams to stdout, Ctrl-C (SIGINT) during a
    long reply interrupts it and the chat goes on, end of input ends it with status 0."""
    factory = ScriptedClientFactory(script=slow_for("long"))
    code = "import sys; from app.client._chat import run_chat; run_chat(sys.argv[1], 'chat-2')"
    output = bytearray()

    async def read_until(text: str) -> None:
        while text.encode() not in output:
            chunk = await process.stdout.receive_some()
            assert chunk, f"the chat ended before printing {text!r}: {output.decode()}"
            output.extend(chunk)

    with trio.fail_after(GUARD_S):
        async with serving(tmp_path, factory) as served, trio.open_nursery() as nursery:
            command = [sys.executable, "-c", code, served.url]
            process = await nursery.start(
                functools.partial(
                    trio.run_process,
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    check=False,
                    cwd=PROJECT_ROOT,
                )
            )
            await read_until("session chat-2")
            await process.stdin.send_all(b"hello\n")
            await read_until("echo: hello #1")
            await process.stdin.send_all(b"long\n")
            await read_until("claude> x")
            process.send_signal(signal.SIGINT)
            await read_until("interrupted:")
            await process.stdin.send_all(b"after\n")
            await read_until("echo: after #3")
            await process.stdin.aclose()
            await process.wait()
            await process.stdout.aclose()
    assert process.returncode == 0, output.decode()
    assert factory.clients[0].interrupts == 1
