"""The processes under test: the offline upstream and ``ccactors serve``, each its own
process, and one streamed turn through ccactors over HTTP.

ccactors runs as a subprocess so that its CPU time (``psutil`` user + system of the
server process, its CLIs excluded) is its own: the load generator's share is not in
it. The offline upstream is a third process shared by both contenders, so neither pays
for the fake model's work, and the server is pointed at it the way an operator points
it at any Anthropic-compatible endpoint (``ANTHROPIC_BASE_URL`` in its environment).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import trio

from app._server import OFFLINE_API_KEY, wait_for_signal
from app._settings import PROJECT_ROOT

from .measure import DELTA, TURN_LIMIT_S, TurnTiming

T = TypeVar("T")

MODEL = "claude-sonnet-4-6"
STATS_WAIT_S = 120  # a state of the server waited for (a full warm pool...) comes by then
_DELTA_MARK = f"event: {DELTA}".encode()
_ERROR_MARK = b"event: error"


@dataclass
class Process:
    """A started ``python -m app ...`` process and the URL it serves on."""

    url: str
    popen: subprocess.Popen[str]
    log_path: Path

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.popen.pid)

    def rss_bytes(self) -> int:
        """Resident memory of this process alone (its CLIs not included)."""
        return self.ps.memory_info().rss

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait (SIGKILL after ``timeout`` seconds); the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()
        finally:
            if self.popen.stdout is not None:
                self.popen.stdout.close()


class Stopped(Exception):
    """The run was stopped by ``signum`` (after stopping everything it started)."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signal = signum


async def until_signal(run: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await run(*args)``, cancelled by Ctrl-C (SIGINT) or SIGTERM, so that every
    process it started is stopped on the way out (each is, in a ``finally``); then
    ``Stopped`` is raised."""
    received: list[signal.Signals] = []
    async with trio.open_nursery() as nursery:

        async def stop_on_signal() -> None:
            received.append(await wait_for_signal())
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_on_signal)
        result = await run(*args)
        nursery.cancel_scope.cancel()
        return result
    raise Stopped(received[0])


def spawn(
    args: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    module: str = "app",
    tree: Path = PROJECT_ROOT,
) -> Process:
    """Start ``python -m <module> <args>`` (a command that prints ``serving on <url>``)
    from the source tree ``tree`` (its working directory, so ``<module>`` is that tree's)
    and wait up to 60 s for its URL. Its stderr goes to ``log_path``.

    Raises:
        RuntimeError: it exited or printed no URL in time (with its log).
    """
    with log_path.open("w") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=tree,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **(env or {})},
        )
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        deadline = time.monotonic() + 60
        while selector.select(timeout=max(0, deadline - time.monotonic())):
            line = popen.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            if match := re.search(r"serving on (http://\S+)", line):
                return Process(match.group(1), popen, log_path)
    popen.kill()
    popen.wait()
    command = " ".join([module, *args])
    raise RuntimeError(f"`python -m {command}` did not start:\n{log_path.read_text()[-4000:]}")


def start_upstream(log_path: Path) -> Process:
    """``ccactors offline-upstream`` on a free port."""
    return spawn(["offline-upstream", "--port", "0"], log_path)


def start_floor(log_path: Path) -> Process:
    """The HTTP floor (``benchmarks/floor.py``) on a free port."""
    return spawn([], log_path, module="benchmarks.floor")


def start_bare_proxy(root: Path, upstream_url: str) -> Process:
    """The bare proxy (``benchmarks/bare_proxy.py``) on a free port, its CLI pointed at
    ``upstream_url``, its state under ``root`` (created)."""
    root.mkdir(parents=True, exist_ok=True)
    return spawn(
        [upstream_url, str(root)], root.parent / f"{root.name}.log", module="benchmarks.bare_proxy"
    )


def upstream_env(upstream_url: str) -> dict[str, str]:
    """What points a CLI at the offline upstream, as ``serve --offline`` does it."""
    return {
        "ANTHROPIC_BASE_URL": upstream_url,
        "ANTHROPIC_API_KEY": OFFLINE_API_KEY,
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


def start_ccactors(
    state_dir: Path, upstream_url: str, settings: dict[str, Any], tree: Path = PROJECT_ROOT
) -> Process:
    """``ccactors serve`` on a free port, its CLIs pointed at ``upstream_url``.

    Args:
        state_dir: the server's state directory (created).
        upstream_url: the offline upstream's base URL.
        settings: ccactors settings by name (``warm_pool_size=2`` becomes
            ``CCACTORS_WARM_POOL_SIZE=2``).
        tree: the source tree to run (another checkout: ``benchmarks.compare``).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {f"CCACTORS_{name.upper()}": str(value) for name, value in settings.items()}
    env.setdefault("CCACTORS_LOG_LEVEL", "WARNING")
    # Its CLIs start on the model the benchmark asks for (``--model MODEL``), as the
    # direct SDK's do: the same flags, so no turn needs a switch of model.
    env.setdefault("CCACTORS_MODEL", MODEL)
    env.update(upstream_env(upstream_url))
    args = ["serve", "--port", "0", "--state-dir", str(state_dir)]
    return spawn(args, state_dir.parent / f"{state_dir.name}.log", env, tree=tree)


async def stats(http: httpx.AsyncClient) -> dict[str, Any]:
    """The server's ``GET /v1/stats``."""
    response = await http.get("/v1/stats")
    response.raise_for_status()
    return response.json()


async def wait_for_stats(
    http: httpx.AsyncClient, predicate: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll ``/v1/stats`` every 50 ms until ``predicate(stats)``; those stats.

    Raises:
        TimeoutError: not within ``STATS_WAIT_S`` (what was waited for is in the message).
    """
    with trio.move_on_after(STATS_WAIT_S):
        # Another process's state: nothing to wait on but the next look.
        while not predicate(current := await stats(http)):  # noqa: ASYNC110
            await trio.sleep(0.05)
        return current
    raise TimeoutError(f"gave up after {STATS_WAIT_S} s waiting for {what}")


async def served_turn(
    http: httpx.AsyncClient,
    session: str | None,
    prompt: str,
    first_delta: trio.Event | None = None,
) -> TurnTiming:
    """One streamed ``POST /v1/messages`` turn; its timings. ``first_delta``, if given,
    is set when the first text delta arrives. A turn not over within ``TURN_LIMIT_S``
    is given up (``error``).

    The stream is read as raw bytes and only scanned for event names, so the client's
    own work per delta stays small next to the server's.
    """
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }
    headers = {} if session is None else {"X-Session-ID": session}
    timing = TurnTiming()
    started = time.perf_counter()
    with trio.move_on_after(TURN_LIMIT_S) as guard:
        await _read_turn(http, body, headers, timing, started, first_delta)
    if guard.cancelled_caught:
        timing.error = f"no end of the turn within {TURN_LIMIT_S} s"
    timing.turn_s = time.perf_counter() - started
    return timing


async def _read_turn(
    http: httpx.AsyncClient,
    body: dict[str, Any],
    headers: dict[str, str],
    timing: TurnTiming,
    started: float,
    first_delta: trio.Event | None,
) -> None:
    tail = b""
    async with http.stream("POST", "/v1/messages", json=body, headers=headers) as response:
        timing.status = response.status_code
        if response.status_code != 200:
            timing.error = (await response.aread()).decode(errors="replace")[:300]
        else:
            async for chunk in response.aiter_raw():
                window = tail + chunk
                if found := window.count(_DELTA_MARK):
                    now = time.perf_counter() - started
                    timing.deltas += found
                    timing.last_delta_s = now
                    if timing.first_delta_s is None:
                        timing.first_delta_s = timing.ttft_s = now
                        if first_delta is not None:
                            first_delta.set()
                if _ERROR_MARK in window:
                    timing.error = window[window.index(_ERROR_MARK) :][:300].decode(
                        errors="replace"
                    )
                # What could be the start of a marker cut in two (never a whole one).
                tail = window[-(len(_DELTA_MARK) - 1) :]


def open_http(url: str, connections: int = 8) -> httpx.AsyncClient:
    """An HTTP client for the server: no retries, generous timeouts."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120), limits=limits)


def directory_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
