"""Concurrent load through the real Claude Code CLI: N sessions x M streamed turns at once.

Starts ``ccactors serve --offline`` as its own process (so the load generator does not
share its CPU with the server's event loop), then has N sessions each send M streamed
turns back to back, all sessions at once, over httpx. Reports time to first text delta
(p50/p99/max), whole-turn time, wall time, refusals and errors by status.

With ``--direct``, the same load runs without ccactors' server: N clients of the SDK
adapter (``actors.open_sdk_client``, the same CLI and flags) opened at once in this
process against the offline upstream: the limit any proxy is measured against (each
session's first turn includes its CLI's start-up, as through the server).

    uv run python benchmarks/load.py [--sessions 16] [--turns 10] [--live 16] [--direct]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def spawn(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """``python -m app <args>`` (a command that prints ``serving on <url>``); the process
    and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    for line in process.stdout:  # type: ignore[union-attr]
        if match := re.search(r"serving on (http://\S+)", line):
            return process, match.group(1)
    raise RuntimeError(f"`ccactors {args[0]}` did not start")


def start_server(state: Path, live: int, pool: int) -> tuple[subprocess.Popen[str], str]:
    """``ccactors serve --offline`` on a free port; the process and its URL."""
    env = {
        "CCACTORS_MAX_LIVE_SESSIONS": str(live),
        "CCACTORS_WARM_POOL_SIZE": str(pool),
        "CCACTORS_LOG_LEVEL": "WARNING",
    }
    return spawn("serve", "--offline", "--port", "0", "--state-dir", str(state), env=env)


async def session(client: httpx.AsyncClient, name: str, turns: int, results: list[dict]) -> None:
    """``turns`` streamed turns of one session, back to back."""
    for n in range(turns):
        body = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": f"turn {n} [[chunks=5]]"}],
        }
        started = trio.current_time()
        first = None
        async with client.stream(
            "POST", "/v1/messages", json=body, headers={"X-Session-ID": name}
        ) as response:
            async for line in response.aiter_lines():
                if first is None and line.startswith("event: content_block_delta"):
                    first = trio.current_time() - started
        results.append(
            {
                "session": name,
                "status": response.status_code,
                "ttft_s": first,
                "turn_s": trio.current_time() - started,
            }
        )


async def load(url: str, sessions: int, turns: int) -> tuple[list[dict], float]:
    results: list[dict] = []
    limits = httpx.Limits(max_connections=sessions * 2)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for s in range(sessions):
                nursery.start_soon(session, client, f"load-{s}", turns, results)
        return results, trio.current_time() - started


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    """``ccactors offline-upstream`` on a free port; the process and its URL."""
    return spawn("offline-upstream", "--port", "0")


async def direct_session(
    options, workspace: Path, name: str, turns: int, results: list[dict]
) -> None:
    """``turns`` turns on one SDK client of its own, as a session of the server runs."""
    from actors import SessionSpec, open_sdk_client
    from actors._client import StreamEvent, TurnResult

    opened = trio.current_time()  # a first turn includes its CLI's start, as in ccactors
    async with open_sdk_client(options, SessionSpec(workspace)) as client:
        for n in range(turns):
            started = opened if n == 0 else trio.current_time()
            first = None
            await client.query(f"turn {n} [[chunks=5]]")
            while not isinstance(message := await client.receive(), TurnResult):
                if (
                    first is None
                    and isinstance(message, StreamEvent)
                    and message.event.get("type") == "content_block_delta"
                ):
                    first = trio.current_time() - started
            results.append(
                {
                    "session": name,
                    "status": 200,
                    "ttft_s": first,
                    "turn_s": trio.current_time() - started,
                }
            )


async def direct_load(
    upstream: str, state: Path, sessions: int, turns: int
) -> tuple[list[dict], float]:
    from actors import BUNDLED_CLI, CliOptions

    options = CliOptions(
        cli_path=BUNDLED_CLI,
        env={
            "ANTHROPIC_BASE_URL": upstream,
            "ANTHROPIC_API_KEY": "bench",
            "CLAUDE_CONFIG_DIR": str(state / "claude"),
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        },
        tools=("Read", "Glob", "Grep"),
        disallowed_tools=("Bash", "Edit", "Write", "WebFetch", "WebSearch"),
    )
    results: list[dict] = []
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for s in range(sessions):
            nursery.start_soon(
                direct_session, options, state / f"w{s}", f"direct-{s}", turns, results
            )
    return results, trio.current_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--live", type=int, default=16, help="max_live_sessions")
    parser.add_argument("--pool", type=int, default=2, help="warm_pool_size")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--direct", action="store_true", help="the SDK alone, no server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccactors-load-") as state:
        if args.direct:
            for s in range(args.sessions):
                (Path(state) / f"w{s}").mkdir()
            process, url = start_upstream()
            run = (direct_load, url, Path(state), args.sessions, args.turns)
        else:
            process, url = start_server(Path(state), args.live, args.pool)
            time.sleep(3)  # the warm pool fills
            run = (load, url, args.sessions, args.turns)
        try:
            results, wall = trio.run(*run)
        finally:
            process.terminate()
            process.wait(60)
    ok = [r for r in results if r["status"] == 200 and r["ttft_s"] is not None]
    statuses: dict[int, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    ttft = [r["ttft_s"] for r in ok]
    whole = [r["turn_s"] for r in ok]
    summary = {
        "mode": "direct SDK" if args.direct else "ccactors",
        "sessions": args.sessions,
        "turns_per_session": args.turns,
        "max_live_sessions": args.live,
        "warm_pool_size": args.pool,
        "wall_s": round(wall, 2),
        "statuses": statuses,
        "ttft_p50_ms": round(percentile(ttft, 0.5) * 1000, 1) if ttft else None,
        "ttft_p99_ms": round(percentile(ttft, 0.99) * 1000, 1) if ttft else None,
        "ttft_max_ms": round(max(ttft) * 1000, 1) if ttft else None,
        "turn_p50_ms": round(percentile(whole, 0.5) * 1000, 1) if whole else None,
        "turn_max_ms": round(max(whole) * 1000, 1) if whole else None,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "turns": results}, indent=2))


if __name__ == "__main__":
    main()
