"""End to end: supervision with the real CLI, real processes and real faults.

The shared server runs with first_chunk_timeout_s=5 and stream_idle_timeout_s=3.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import psutil
import pytest

from .conftest import MODEL, SHORT_TIMEOUTS, ask, start_server, stop_server, wait_until

pytestmark = pytest.mark.e2e

SLOW = "[[chunks=50]] [[chunk_delay=0.1]]"  # about 5 s of streaming


def stream_frames(url: str, session: str, prompt: str, on_delta=None) -> list[dict]:
    """Stream one turn with raw httpx; return the data of every SSE frame."""
    body = {"model": MODEL, "max_tokens": 256, "stream": True}
    body["messages"] = [{"role": "user", "content": prompt}]
    frames = []
    with httpx.stream(
        "POST", f"{url}/v1/messages", json=body, headers={"X-Session-ID": session}, timeout=60
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                frames.append(json.loads(line.removeprefix("data:")))
                if on_delta and frames[-1]["type"] == "content_block_delta":
                    on_delta()
                    on_delta = None
    return frames


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie not yet reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_slow_session_does_not_delay_another_sessions_reply(server, client):
    """While one session streams for about 5 s, another session's reply comes back long
    before it: no lock across sessions."""
    ask(client, "e2e-slow", "warm up")
    ask(client, "e2e-fast", "warm up")
    streaming = threading.Event()
    started = time.monotonic()

    def slow() -> tuple[list[dict], float]:
        try:
            frames = stream_frames(server.url, "e2e-slow", f"slow {SLOW}", streaming.set)
        finally:
            streaming.set()  # also if it failed: the main thread need not wait in vain
        return frames, time.monotonic() - started

    with ThreadPoolExecutor(1) as pool:
        slow_turn = pool.submit(slow)
        assert streaming.wait(30), "the slow turn should stream"  # its session is busy
        assert ask(client, "e2e-fast", "quick") == "echo: quick"
        fast = time.monotonic() - started
        frames, slow_s = slow_turn.result(timeout=30)  # re-raises if the thread failed
    assert frames[-1]["type"] == "message_stop"
    assert slow_s > 4.5
    assert fast < slow_s - 3, (fast, slow_s)


def test_wedged_cli_gets_a_timeout_error_and_is_replaced(server, client):
    """SIGSTOP a session's CLI, then send a turn: it fails with a timeout within
    first_chunk_timeout_s plus a margin, the stopped process is killed, and the next turn
    answers its own prompt with the conversation intact (count continues)."""
    session = "e2e-sigstop"
    assert ask(client, session, "[[count]]") == "count=1"
    server.wait_for_transcript(session, "count=1")
    pid = server.session(session)["cli_pid"]
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as caught:
        ask(client, session, "[[count]]")
    elapsed = time.monotonic() - started
    assert caught.value.status_code == 504
    assert caught.value.body["error"]["type"] == "timeout_error"
    assert 5 <= elapsed < 5 + 5, elapsed
    wait_until(lambda: gone(pid), 10, "the stopped CLI to be killed, not left behind")
    assert ask(client, session, "[[count]]") == "count=2"
    info = server.session(session)
    assert info["cli_pid"] != pid
    assert info["restarts"] == 1
    server.wait_until_every_cli_is_accounted_for()


def test_stalled_stream_ends_at_the_idle_timeout_and_the_session_goes_on(server, client):
    """An upstream that goes silent mid-stream ends the turn with a timeout error after
    stream_idle_timeout_s; the next turn answers its own prompt on the same CLI."""
    session = "e2e-stall"
    ask(client, session, "warm up")
    pid = server.session(session)["cli_pid"]
    started = time.monotonic()
    frames = stream_frames(server.url, session, "stall please [[stall_after=2]]")
    elapsed = time.monotonic() - started
    deltas = [f for f in frames if f["type"] == "content_block_delta"]
    assert len(deltas) == 2
    assert frames[-1]["type"] == "error"
    assert frames[-1]["error"]["type"] == "timeout_error"
    assert 3 <= elapsed < 3 + 5, elapsed
    assert ask(client, session, "after the stall") == "echo: after the stall"
    assert server.session(session)["cli_pid"] == pid


def test_cli_killed_between_turns_is_restarted_and_the_conversation_continues(server, client):
    """kill -9 of a session's CLI while idle: the next turn works and remembers."""
    session = "e2e-kill9"
    assert ask(client, session, "[[count]]") == "count=1"
    server.wait_for_transcript(session, "count=1")
    pid = server.session(session)["cli_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid), 10, f"the killed CLI {pid} to exit")
    # The server notices the exit by itself and restarts the CLI (resuming) while idle.
    # (A turn sent in the few ms before the kernel reaps the CLI could still be written
    # to it; it would fail with 502, never be silently re-run.)
    wait_until(
        lambda: server.session(session)["cli_pid"] not in (pid, None),
        15,
        "the dead CLI to be replaced",
    )
    assert server.session(session)["restarts"] == 1
    assert ask(client, session, "[[count]]") == "count=2"


def test_interrupt_endpoint_ends_a_streaming_turn_promptly(server, client):
    """POST /v1/sessions/{id}/interrupt stops the running turn: its stream ends with an
    error event long before the reply would have; the session answers its next turn."""
    session = "e2e-interrupt"
    ask(client, session, "warm up")
    timing: dict[str, float] = {}

    def interrupt() -> None:
        timing["asked"] = time.monotonic()
        response = httpx.post(f"{server.url}/v1/sessions/{session}/interrupt", timeout=10)
        assert response.json() == {"id": session, "interrupted": True}

    frames = stream_frames(server.url, session, f"long {SLOW}", on_delta=interrupt)
    assert time.monotonic() - timing["asked"] < 2
    assert frames[-1]["type"] == "error"
    assert "interrupted" in frames[-1]["error"]["message"]
    assert ask(client, session, "next") == "echo: next"


def test_event_stream_shows_a_sessions_turn_to_listeners(server, client):
    """GET /v1/sessions/{id}/events lets another client watch a turn live."""
    session = "e2e-events"
    ask(client, session, "warm up")
    listening = threading.Event()

    def listen() -> list[dict]:
        seen = []
        url = f"{server.url}/v1/sessions/{session}/events"
        try:
            with httpx.stream("GET", url, timeout=30) as r:
                # The route listens before it answers: with its headers here, it listens.
                listening.set()
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        seen.append(json.loads(line.removeprefix("data:")))
                        if seen[-1]["type"] in ("turn_completed", "turn_failed"):
                            return seen
        finally:
            listening.set()  # also if it failed: the main thread need not wait in vain
        raise AssertionError(f"the event stream ended early, after {seen}")

    with ThreadPoolExecutor(1) as pool:
        listener = pool.submit(listen)
        assert listening.wait(10), "the event stream should start"
        if listener.done():
            listener.result()  # it failed before the turn: raise its error here
        assert server.session(session)["listeners"] == 1
        assert ask(client, session, "watch me [[chunks=3]]") == "echo: watch me [[chunks=3]]"
        seen = listener.result(timeout=15)  # re-raises if the listener failed
    kinds = [event["type"] for event in seen]
    assert kinds[0] == "turn_started"
    assert kinds.count("text_delta") == 3
    assert kinds[-1] == "turn_completed"
    assert "".join(e["text"] for e in seen if e["type"] == "text_delta") == (
        "echo: watch me [[chunks=3]]"
    )
    missing = httpx.get(f"{server.url}/v1/sessions/nobody/events", timeout=10)
    assert missing.status_code == 404


def test_stats_count_sessions_restarts_and_timeouts(server, client):
    """GET /v1/stats reports live/hibernated sessions, the warm pool and timeouts."""
    ask(client, "e2e-stats", "hi")
    server.wait_until_every_cli_is_accounted_for()  # the warm pool has settled
    stats = httpx.get(f"{server.url}/v1/stats", timeout=10).json()
    sessions = httpx.get(f"{server.url}/v1/sessions?limit=1000", timeout=10).json()["data"]
    assert stats["live_sessions"] == sum(s["live"] for s in sessions)
    assert stats["hibernated_sessions"] == sum(s["hibernated"] for s in sessions)
    assert stats["live_sessions"] + stats["warm_pool_size"] == stats["live_processes"]
    assert stats["warm_pool_size"] == len(stats["warm_pids"]) <= 2
    assert stats["live_processes"] == len(server.cli_pids())
    assert set(stats["timeouts"]) == {"first_chunk", "stream_idle"}


def test_hibernated_session_resumes_on_a_new_cli(tmp_path):
    """A session idle past session_idle_ttl_s closes its CLI; its next turn starts a new
    one that resumes the conversation (count continues)."""
    env = {**SHORT_TIMEOUTS, "CCACTORS_SESSION_IDLE_TTL_S": "1", "CCACTORS_WARM_POOL_SIZE": "0"}
    server = start_server(tmp_path / "state", tmp_path / "server.log", env=env)
    try:
        with anthropic.Anthropic(base_url=server.url, api_key="t", max_retries=0) as client:
            assert ask(client, "hib", "[[count]]") == "count=1"
            pid = server.session("hib")["cli_pid"]
            wait_until(lambda: not server.session("hib")["live"], 15, "the session to hibernate")
            info = server.session("hib")
            assert info["hibernated"] and info["cli_pid"] is None and info["claude_session_id"]
            wait_until(lambda: gone(pid), 10, f"the hibernated session's CLI {pid} to exit")
            assert ask(client, "hib", "[[count]]") == "count=2"
            assert server.session("hib")["cli_pid"] not in (None, pid)
    finally:
        assert stop_server(server) == 0


def test_shutdown_with_turns_in_flight_leaves_no_cli_behind(tmp_path):
    """SIGTERM while two sessions stream: the turns finish within the grace period, the
    server exits 0, and every CLI process it started is gone."""
    server = start_server(tmp_path / "state", tmp_path / "server.log", env=SHORT_TIMEOUTS)
    streaming = threading.Barrier(3)

    def run(session: str) -> list[dict]:
        try:
            return stream_frames(
                server.url, session, f"bye {SLOW}", on_delta=lambda: streaming.wait(30)
            )
        except BaseException:
            streaming.abort()  # this turn will not stream: wake the others at once
            raise

    with ThreadPoolExecutor(2) as pool:
        try:
            turns = {session: pool.submit(run, session) for session in ("sd-a", "sd-b")}
            streaming.wait(30)
            pids = server.cli_pids()
            assert len(pids) >= 2
        finally:
            assert stop_server(server) == 0
        # Every turn's result, re-raising a thread's failure rather than skipping it.
        results = {session: turn.result(timeout=30) for session, turn in turns.items()}
    assert all(frames[-1]["type"] == "message_stop" for frames in results.values()), results
    wait_until(lambda: all(gone(pid) for pid in pids), 1, "every CLI of the server to be gone")


def test_a_restarted_server_resumes_known_sessions(tmp_path):
    """Stop the server process and start it again on the same state: a known session's
    next turn resumes its conversation (count continues), with its own key only."""
    env = {**SHORT_TIMEOUTS, "CCACTORS_API_KEYS": '["key-a", "key-b"]'}
    state, log = tmp_path / "state", tmp_path / "server.log"
    for expected in ("count=1", "count=2"):
        server = start_server(state, log, env=env)
        try:
            with anthropic.Anthropic(base_url=server.url, api_key="key-a", max_retries=0) as a:
                assert ask(a, "durable", "[[count]]") == expected
                server.wait_for_transcript("durable", expected, api_key="key-a")
        finally:
            assert stop_server(server) == 0
    server = start_server(state, log, env=env)
    try:
        # Known before its next turn: listed and readable, hibernated, by its own key only.
        listed = httpx.get(f"{server.url}/v1/sessions", headers={"x-api-key": "key-a"}).json()
        assert [(s["id"], s["hibernated"], s["turns"]) for s in listed["data"]] == [
            ("durable", True, 2)
        ]
        assert server.session("durable", api_key="key-a")["turns"] == 2
        with anthropic.Anthropic(base_url=server.url, api_key="key-b", max_retries=0) as b:
            assert ask(b, "durable", "[[count]]") == "count=1"  # key-b's own session
    finally:
        assert stop_server(server) == 0
