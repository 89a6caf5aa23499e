"""Structured logs: JSON lines carrying request, session and turn ids."""

from __future__ import annotations

import io
import json
import logging

import pytest
import trio

from actors import SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory, text_reply
from app._logging import JsonFormatter, _ContextFilter
from app._settings import Settings
from app.http._access_log import AccessLog
from app.http._app import create_app

from .serving import serving

GUARD_S = 30

BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def json_lines():
    """Captures ccactors' loggers as the JSON lines `--log-format json` writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ccactors.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


async def test_each_request_gets_one_json_access_line_with_its_ids(tmp_path, json_lines):
    """One access line per request with method, path, status, duration, the request id
    (the caller's X-Request-ID, echoed as request-id) and the session id."""
    config = SupervisorConfig(workspace_root=tmp_path)
    async with open_supervisor(config, ScriptedClientFactory()) as sup:
        client = create_app(sup, Settings(state_dir=tmp_path)).test_client()
        response = await client.post(
            "/v1/messages", json=BODY, headers={"X-Session-ID": "s1", "X-Request-ID": "r-1"}
        )
        assert response.headers["request-id"] == "r-1"
        other = await client.get("/health", headers={"X-Request-ID": "bad id!"})
        generated = other.headers["request-id"]
    assert generated.startswith("req_")
    first, second = json_lines()
    assert first["message"] == "POST /v1/messages 200"
    assert (first["request_id"], first["session_id"], first["status"]) == ("r-1", "s1", 200)
    assert first["duration_ms"] >= 0
    assert (second["path"], second["request_id"]) == ("/health", generated)


async def test_a_stream_is_logged_once_over_with_its_whole_duration(
    tmp_path, json_lines, autojump_clock
):
    """A streamed reply's access line is written when the stream ends: its duration is
    the stream's (five deltas a second apart: over 4 s), not the time to its head."""
    factory = ScriptedClientFactory(
        script=lambda prompt, history: text_reply("a b c d e", chunks=5, chunk_delay=1.0)
    )
    async with open_supervisor(SupervisorConfig(workspace_root=tmp_path), factory) as sup:
        client = create_app(sup, Settings(state_dir=tmp_path)).test_client()
        response = await client.post(
            "/v1/messages", json={**BODY, "stream": True}, headers={"X-Session-ID": "s1"}
        )
        assert "message_stop" in (await response.get_data(as_text=True))
    (line,) = json_lines()
    assert (line["status"], line["session_id"], line["complete"]) == (200, "s1", True)
    assert line["duration_ms"] >= 4000


async def test_a_client_that_leaves_mid_stream_is_logged_once_as_incomplete(tmp_path, json_lines):
    """A client on a real socket reading a stream's first text and closing the
    connection: the request's one access line says 200 and ``complete: false``."""
    slow = ScriptedClientFactory(
        script=lambda prompt, history: text_reply("a b", chunks=2, chunk_delay=GUARD_S)
    )
    logged = trio.Event()
    notify = logging.Handler()
    notify.emit = lambda record: logged.set()
    logging.getLogger("ccactors.access").addHandler(notify)
    body = json.dumps({**BODY, "stream": True}).encode()
    try:
        with trio.fail_after(GUARD_S):
            async with serving(Settings(state_dir=tmp_path), slow) as url:
                host, port = url.removeprefix("http://").rsplit(":", 1)
                async with await trio.open_tcp_stream(host, int(port)) as stream:
                    await stream.send_all(
                        b"POST /v1/messages HTTP/1.1\r\n"
                        + f"host: {host}:{port}\r\ncontent-length: {len(body)}\r\n".encode()
                        + b"content-type: application/json\r\n\r\n"
                        + body
                    )
                    received = b""
                    while b"content_block_delta" not in received:
                        received += await stream.receive_some()
                await logged.wait()  # the client has left, the stream not ended
    finally:
        logging.getLogger("ccactors.access").removeHandler(notify)
    (line,) = json_lines()
    assert (line["path"], line["status"], line["complete"]) == ("/v1/messages", 200, False)


async def test_a_request_that_fails_before_its_response_is_logged_without_a_status(json_lines):
    """An application that fails before starting a response (nothing in ccactors'
    stack lets one through: quart answers a route's error with a 500) still leaves
    its line, with ``-`` for the status."""

    async def failing(scope, receive, send):
        raise RuntimeError("boom")

    scope = {"type": "http", "method": "POST", "path": "/v1/messages", "client": ("1.2.3.4", 1)}
    with pytest.raises(RuntimeError):
        await AccessLog(failing)(scope, None, None)
    (failed,) = json_lines()
    assert (failed["message"], failed["complete"], failed["client"]) == (
        "POST /v1/messages -",
        False,
        "1.2.3.4",
    )
    assert "status" not in failed
