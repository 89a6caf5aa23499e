"""End to end: the real Claude Code CLI as a client of ccactors (ANTHROPIC_BASE_URL)."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest

from .conftest import claude_cli

pytestmark = pytest.mark.e2e


def claude(server, tmp_path, *args: str, auth: dict[str, str]) -> dict:
    """Run ``claude -p ... --output-format json`` against the server; its JSON result."""
    env = {
        **os.environ,
        **auth,
        "ANTHROPIC_BASE_URL": server.url,
        "CLAUDE_CONFIG_DIR": str(tmp_path / "client-config"),
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
    }
    env.pop("ANTHROPIC_API_KEY" if "ANTHROPIC_AUTH_TOKEN" in auth else "ANTHROPIC_AUTH_TOKEN", None)
    workdir = tmp_path / "client-cwd"
    workdir.mkdir(exist_ok=True)
    result = subprocess.run(
        [str(claude_cli()), "-p", *args, "--output-format", "json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_claude_code_gets_its_answers_from_ccactors(server, tmp_path):
    """`claude -p` pointed at ccactors gets the session's answer; its session id keys our
    session; a resumed conversation (which resends everything) continues that session,
    with a Bearer token as well as an x-api-key accepted."""
    first = claude(server, tmp_path, "hello [[count]]", auth={"ANTHROPIC_API_KEY": "k"})
    assert first["is_error"] is False
    assert first["result"] == "count=1"
    session_id = first["session_id"]
    assert server.session(session_id)["turns"] == 1
    second = claude(
        server,
        tmp_path,
        "--resume",
        session_id,
        "again [[count]]",
        auth={"ANTHROPIC_AUTH_TOKEN": "bearer-token"},
    )
    assert second["result"] == "count=2"
    assert server.session(session_id)["turns"] == 2
    server.wait_for_transcript(session_id, "count=2")
    messages = httpx.get(f"{server.url}/v1/sessions/{session_id}/messages", timeout=10).json()
    prompts = [m for m in messages["data"] if m["role"] == "user"]
    assert [b["text"] for m in prompts for b in m["content"]] == [
        "hello [[count]]",
        "again [[count]]",
    ]


def test_count_tokens_and_root_answer(server):
    """The endpoints Claude Code calls besides /v1/messages answer, not 404."""
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    counted = httpx.post(f"{server.url}/v1/messages/count_tokens", json=body, timeout=10)
    assert counted.status_code == 200
    assert counted.json()["input_tokens"] > 100
    assert httpx.head(f"{server.url}/", timeout=10).status_code == 200
