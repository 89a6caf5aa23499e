"""What lineage costs: a warm continued turn whose client resends the whole conversation
(no session id) against the same turn with ``X-Session-ID`` (only the new message).

Both through the real Claude Code CLI against ``ccactors serve --offline``, with the
official ``anthropic`` client, non-streaming, alternating the two kinds so that drift
on a busy machine hits both alike. Each conversation is warmed up first (its CLI
started), so every measured turn is a warm continued turn of a live session. The
history grows by one turn per request, as a chat front end's does.

Run with ``just bench-lineage`` (``--turns N``, default 10). Prints medians and 90th
percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic
import trio

from app._server import serve
from app._settings import Settings

from .server import MODEL


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"{name:<40} n={len(ms):<3} median {statistics.median(ms):7.1f} ms"
        f"   p90 {percentile(ms, 0.9):7.1f} ms   max {max(ms):7.1f} ms"
    )


def timed(client: anthropic.Anthropic, messages: list[dict[str, Any]], headers: dict) -> tuple:
    """One non-streaming turn: (seconds until the whole reply is back, its text, the
    session id it ran on)."""
    started = time.perf_counter()
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=messages, extra_headers=headers
    )
    elapsed = time.perf_counter() - started
    text = "".join(b.text for b in raw.parse().content if b.type == "text")
    return elapsed, text, raw.headers["X-Session-ID"]


def measure(url: str, turns: int) -> None:
    with anthropic.Anthropic(base_url=url, api_key="bench", max_retries=0, timeout=60) as client:
        history: list[dict[str, Any]] = []
        resent, with_id = [], []
        sessions = set()
        for n in range(turns + 1):  # turn 0 of each warms its session up
            history.append({"role": "user", "content": f"turn {n}"})
            elapsed, text, session = timed(client, history, {})
            history.append({"role": "assistant", "content": text})
            sessions.add(session)
            id_elapsed, _, _ = timed(
                client, [{"role": "user", "content": f"id {n}"}], {"X-Session-ID": "bench-id"}
            )
            if n:
                resent.append(elapsed)
                with_id.append(id_elapsed)
        assert len(sessions) == 1, f"the resent conversation ran on {len(sessions)} sessions"
        report("warm turn, full history, no session id", resent)
        report("warm turn, X-Session-ID, last message", with_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccactors-bench-") as state:
        settings = Settings(
            port=0, offline=True, state_dir=Path(state), warm_pool_size=2, log_level="WARNING"
        )

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(serve, settings)
                await trio.to_thread.run_sync(measure, url, args.turns)
                nursery.cancel_scope.cancel()

        trio.run(run)


if __name__ == "__main__":
    sys.exit(main())
