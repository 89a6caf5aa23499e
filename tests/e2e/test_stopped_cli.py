"""End to end: a CLI that takes no prompt (SIGSTOPped, with a prompt bigger than its
input pipe) cannot hold a session, a DELETE or a shutdown hostage."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import psutil
import pytest

from .conftest import SHORT_TIMEOUTS, Server, start_server, stop_server, wait_until

pytestmark = pytest.mark.e2e

PROMPT_WRITE_S = 3
CLOSE_S = 2
BIG = "x" * 300_000  # a Linux pipe holds 64 KiB: the write blocks on a stopped reader


def _post(server: Server, session: str, prompt: str) -> httpx.Response:
    body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": prompt}]}
    headers = {"X-Session-ID": session}
    return httpx.post(f"{server.url}/v1/messages", json=body, headers=headers, timeout=120)


def _stopped_with_a_big_prompt(
    server: Server, pool: ThreadPoolExecutor, session: str
) -> tuple[int, Future[httpx.Response]]:
    """A live session whose CLI is SIGSTOPped while a 300 kB prompt is being written."""
    assert _post(server, session, "hello").status_code == 200
    pid = server.session(session)["cli_pid"]
    os.kill(pid, signal.SIGSTOP)
    pending = pool.submit(_post, server, session, BIG)

    def busy() -> bool:
        assert not pending.done(), pending.result().text  # it ended before it started
        return server.session(session)["state"] == "busy"

    wait_until(busy, 30, "the big turn to start")
    return pid, pending


def _gone(pid: int, timeout: float) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.fixture
def stopping_server(tmp_path):
    env = {
        **SHORT_TIMEOUTS,
        "CCACTORS_WARM_POOL_SIZE": "0",
        "CCACTORS_PROMPT_WRITE_TIMEOUT_S": str(PROMPT_WRITE_S),
        "CCACTORS_CLI_CLOSE_TIMEOUT_S": str(CLOSE_S),
    }
    server = start_server(tmp_path / "state", tmp_path / "server.log", env=env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            stop_server(server)


def test_a_cli_that_takes_no_prompt_is_killed_and_the_session_restarts(stopping_server):
    """The blocked prompt write gives up after ``prompt_write_timeout_s``: that turn
    fails (502, never re-run), the stopped CLI is killed, and the next turn runs on a
    new CLI that resumes the conversation."""
    server = stopping_server
    with ThreadPoolExecutor(1) as pool:
        pid, pending = _stopped_with_a_big_prompt(server, pool, "wedged")
        started = time.monotonic()
        failed = pending.result(timeout=60)
    assert failed.status_code == 502, failed.text
    assert "did not take its prompt" in failed.json()["error"]["message"]
    assert time.monotonic() - started < PROMPT_WRITE_S + 10
    assert _gone(pid, 10)
    again = _post(server, "wedged", "still there? [[count]]")
    assert again.status_code == 200, again.text
    assert server.session("wedged")["cli_pid"] not in (None, pid)


def test_delete_and_shutdown_finish_while_a_stopped_cli_blocks_a_prompt(stopping_server):
    """DELETE of a session whose stopped CLI blocks a prompt write returns within the
    CLI's close deadline (the write is not shielded from it); so does a SIGTERM to the
    server with another such session."""
    server = stopping_server
    with ThreadPoolExecutor(2) as pool:
        pid, pending = _stopped_with_a_big_prompt(server, pool, "deleted")
        started = time.monotonic()
        deleted = httpx.delete(f"{server.url}/v1/sessions/deleted", timeout=60)
        assert deleted.status_code == 200, deleted.text
        assert time.monotonic() - started < CLOSE_S + 5
        assert _gone(pid, 10)
        assert pending.result(timeout=30).status_code >= 500

        pid, pending = _stopped_with_a_big_prompt(server, pool, "shutdown")
        started = time.monotonic()
        assert stop_server(server, 60) == 0, server.log()
        # Shutdown grace (10 s by default) for running turns, then the close deadline.
        assert time.monotonic() - started < 10 + CLOSE_S + 10
        assert _gone(pid, 10)
        pending.exception(timeout=30)  # the request ended one way or another
