"""Concurrent load through the real Claude Code CLI: N sessions x M streamed turns at once.

Starts ``ccactors serve --offline`` as its own process (so the load generator does not
share its CPU with the server's event loop), then has N sessions each send M streamed
turns back to back, all sessions at once, over httpx. Reports time to first text delta
(p50/p99/max), whole-turn time, wall time, refusals and errors by status.

    uv run python benchmarks/concurrent.py [--sessions 16] [--turns 10] [--live 16]
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


def start_server(state: Path, live: int, pool: int) -> tuple[subprocess.Popen[str], str]:
    """``ccactors serve --offline`` on a free port; the process and its URL."""
    env = {
        **os.environ,
        "CCACTORS_MAX_LIVE_SESSIONS": str(live),
        "CCACTORS_WARM_POOL_SIZE": str(pool),
        "CCACTORS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "app", "serve", "--offline", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--state-dir", str(state)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    for line in process.stdout:  # type: ignore[union-attr]
        if match := re.search(r"serving on (http://\S+)", line):
            return process, match.group(1)
    raise RuntimeError("ccactors did not start")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--live", type=int, default=16, help="max_live_sessions")
    parser.add_argument("--pool", type=int, default=2, help="warm_pool_size")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccactors-load-") as state:
        process, url = start_server(Path(state), args.live, args.pool)
        try:
            time.sleep(3)  # the warm pool fills
            results, wall = trio.run(load, url, args.sessions, args.turns)
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
