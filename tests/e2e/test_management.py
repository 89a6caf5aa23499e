"""End to end: the management API on the real CLI's sessions and transcripts."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ask

pytestmark = pytest.mark.e2e


def test_messages_come_from_the_transcript_and_delete_removes_everything(server, client):
    """GET /v1/sessions/{id}/messages returns the conversation the CLI recorded; DELETE
    closes the session's CLI and removes its transcript."""
    session = "e2e-manage"
    ask(client, session, "first question")
    ask(client, session, "second question")
    server.wait_for_transcript(session, "echo: second question")
    info = server.session(session)
    messages = httpx.get(f"{server.url}/v1/sessions/{session}/messages", timeout=10).json()
    assert messages["claude_session_id"] == info["claude_session_id"]
    texts = [
        (m["role"], " ".join(b["text"] for b in m["content"] if b["type"] == "text"))
        for m in messages["data"]
    ]
    assert texts == [
        ("user", "first question"),
        ("assistant", "echo: first question"),
        ("user", "second question"),
        ("assistant", "echo: second question"),
    ]
    transcripts = list(
        server.state_dir.glob(f"claude/projects/*/{info['claude_session_id']}.jsonl")
    )
    assert transcripts
    deleted = httpx.delete(f"{server.url}/v1/sessions/{session}", timeout=30)
    assert deleted.status_code == 200
    assert deleted.json()["transcripts_deleted"] == len(transcripts)
    assert not any(path.exists() for path in transcripts)
    assert info["cli_pid"] not in server.cli_pids()
    assert httpx.get(f"{server.url}/v1/sessions/{session}", timeout=10).status_code == 404
    server.wait_until_every_cli_is_accounted_for()
