"""End-to-end fixtures: a real ``ccactors serve --offline`` process on a free port.

The server drives the real pinned ``claude`` CLI, which talks to the offline upstream.
One server is shared by the tests of a session to keep CLI start-ups few.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import psutil
import pytest

from app._settings import PROJECT_ROOT, CliNotFoundError, Settings


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str | Callable[[], str]
) -> None:
    """Wait until ``predicate()`` is true; fail the test after ``timeout`` seconds.

    For conditions that can only be seen by looking (a transcript written, a process
    gone, a server state reported): it looks every 50 ms, so it returns as soon as the
    condition holds, not after a guessed delay. Where a signal exists (an event, a
    stream frame) wait on that instead.

    Args:
        predicate: the condition, looked at until it is true.
        timeout: seconds before the test fails.
        what: what is waited for, for the failure message (or a callable making it).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            message = what() if callable(what) else what
            pytest.fail(f"gave up after {timeout}s waiting for {message}")
        time.sleep(0.05)


def claude_cli() -> Path:
    """The Claude Code CLI the server will run (``CCACTORS_CLI_PATH``, else the CLI bundled
    with the locked claude-agent-sdk, else ``claude`` on PATH); skips the test if none."""
    try:
        return Settings().resolve_cli_path()
    except CliNotFoundError as exc:
        pytest.skip(f"the Claude Code CLI is not installed (run `uv sync`): {exc}")


# Deadlines short enough for tests, long enough for a loaded 2-core machine.
SHORT_TIMEOUTS = {"CCACTORS_FIRST_CHUNK_TIMEOUT_S": "5", "CCACTORS_STREAM_IDLE_TIMEOUT_S": "3"}


@dataclass
class Server:
    """A running ``ccactors serve`` process."""

    url: str
    process: subprocess.Popen[str]
    state_dir: Path
    log_path: Path

    def cli_pids(self) -> set[int]:
        """The pids of the server's live ``claude`` child processes."""
        parent = psutil.Process(self.process.pid)
        pids = set()
        for child in parent.children(recursive=True):
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "claude" in " ".join(
                    child.cmdline()[:1]
                ):
                    pids.add(child.pid)
            except psutil.NoSuchProcess:
                pass
        return pids

    def session(self, session_id: str, api_key: str | None = None) -> dict:
        headers = {} if api_key is None else {"x-api-key": api_key}
        response = httpx.get(f"{self.url}/v1/sessions/{session_id}", headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def accounted_pids(self) -> set[int]:
        """The CLI pids the server reports: live sessions' and warm-pool actors'."""
        sessions = httpx.get(f"{self.url}/v1/sessions", timeout=10).json()["data"]
        stats = httpx.get(f"{self.url}/v1/stats", timeout=10).json()
        return {s["cli_pid"] for s in sessions if s["cli_pid"]} | set(stats["warm_pids"])

    def wait_until_every_cli_is_accounted_for(self, timeout: float = 20) -> None:
        """Assert that, once warm-pool refills settle, every CLI child of the server is
        a live session's or a warm actor's: no leaked process."""
        wait_until(
            lambda: self.cli_pids() == self.accounted_pids(),
            timeout,
            lambda: (
                f"every CLI to be accounted for (unaccounted: "
                f"{self.cli_pids() - self.accounted_pids()})"
            ),
        )

    def wait_for_transcript(
        self, session_id: str, text: str, timeout: float = 15, api_key: str | None = None
    ) -> None:
        """Wait until the session's CLI has written ``text`` to its transcript on disk
        (``CLAUDE_CONFIG_DIR/projects/*/<claude session id>.jsonl``): a fault injected
        before that would lose the turn however well the server behaves."""
        claude_id = self.session(session_id, api_key)["claude_session_id"]
        pattern = f"claude/projects/*/{claude_id}.jsonl"
        wait_until(
            lambda: any(text in path.read_text() for path in self.state_dir.glob(pattern)),
            timeout,
            f"a transcript with {text!r} for {session_id}",
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(state_dir: Path, log_path: Path, *args: str, env: dict | None = None) -> Server:
    """Start ``python -m app serve --offline --port 0`` and wait for its URL (60 s)."""
    claude_cli()
    command = [sys.executable, "-m", "app", "serve", "--offline", "--port", "0"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, "--state-dir", str(state_dir), *args],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **(env or {})},
        )
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while selector.select(timeout=max(0, deadline - time.monotonic())):
            line = process.stdout.readline()
            if not line:
                break
            if match := re.search(r"serving on (http://\S+)", line):
                return Server(match.group(1), process, state_dir, log_path)
    process.kill()
    process.wait()
    process.stdout.close()
    raise RuntimeError(f"ccactors did not start:\n{log_path.read_text()}")


def stop_server(server: Server, timeout: float = 30) -> int:
    """SIGTERM the server and wait for it; returns its exit code."""
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.process.stdout.close()


MODEL = "claude-sonnet-4-6"


def ask(client: anthropic.Anthropic, session: str | None, prompt: str) -> str:
    """One non-streaming turn with the official client; the reply's text."""
    headers = {"X-Session-ID": session} if session else {}
    message = client.messages.create(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": prompt}],
        extra_headers=headers,
    )
    return "".join(block.text for block in message.content if block.type == "text")


@pytest.fixture
def client(server: Server) -> Iterator[anthropic.Anthropic]:
    """The official anthropic client, pointed at the shared server."""
    with anthropic.Anthropic(
        base_url=server.url, api_key="test", max_retries=0, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One offline ccactors server for the end-to-end tests that can share it."""
    root = tmp_path_factory.mktemp("ccactors")
    running = start_server(root / "state", root / "server.log", env=SHORT_TIMEOUTS)
    cli_pids_seen: set[int] = set()
    try:
        yield running
        cli_pids_seen = running.cli_pids()
    finally:
        code = stop_server(running)
    assert code == 0, running.log()
    assert not any(psutil.pid_exists(pid) for pid in cli_pids_seen), "a CLI outlived the server"
