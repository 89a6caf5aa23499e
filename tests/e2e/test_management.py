"""End to end: the management API on the real CLI's sessions and transcripts."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

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


def scrape(server) -> dict[str, float]:
    """GET /metrics parsed with prometheus-client's own parser: {name{labels}: value}."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_metrics_show_the_turns_just_made(server, client):
    """/metrics (Prometheus format) counts a completed turn, its first-token latency and
    duration, its tokens by model, and the live sessions and CLI spawns."""
    ask(client, "e2e-metrics", "warm up")
    before = scrape(server)
    ask(client, "e2e-metrics", "count me [[chunks=3]]")
    after = scrape(server)

    def grew(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert grew("ccactors_turns_total{outcome=completed}") == 1
    assert grew("ccactors_time_to_first_token_seconds_count{}") == 1
    assert grew("ccactors_turn_duration_seconds_count{}") == 1
    output = [k for k in after if k.startswith("ccactors_tokens_total{kind=output")]
    assert output and sum(grew(k) for k in output) > 0
    assert after["ccactors_sessions{state=live}"] >= 1
    assert after["ccactors_cli_spawns_total{}"] >= 1
    assert "ccactors_timeouts_total{kind=first_chunk}" in after
