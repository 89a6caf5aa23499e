"""Structured logs: JSON lines carrying request, session and turn ids."""

from __future__ import annotations

import io
import json
import logging

import pytest

from actors import SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory
from app._logging import JsonFormatter, _ContextFilter
from app._settings import Settings
from app.http._app import create_app

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
