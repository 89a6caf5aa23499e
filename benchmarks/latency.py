"""Latency through the real Claude Code CLI against the offline upstream.

Measures, with the official ``anthropic`` client against ``ccactors serve --offline``:

* cold start: a new session's first reply (pays the CLI's start-up);
* warm turn: a later turn on a live session (the proxy's own overhead plus the CLI's);
* time to first text on a warm streamed turn.

Run with ``just bench``. Prints medians and 90th percentiles in milliseconds.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import trio

from app._server import serve
from app._settings import Settings

COLD_SESSIONS = 6
WARM_TURNS = 30


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"{name:<28} n={len(ms):<3} median {statistics.median(ms):7.1f} ms"
        f"   p90 {percentile(ms, 0.9):7.1f} ms   max {max(ms):7.1f} ms"
    )


def measure(url: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="bench", max_retries=0, timeout=60)

    def turn(session: str, prompt: str) -> float:
        started = time.perf_counter()
        client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=64,
            messages=[{"role": "user", "content": prompt}],
            extra_headers={"X-Session-ID": session},
        )
        return time.perf_counter() - started

    cold = [turn(f"bench-cold-{n}", "hello") for n in range(COLD_SESSIONS)]
    warm = [turn("bench-cold-0", f"turn {n}") for n in range(WARM_TURNS)]
    first_text = []
    for n in range(WARM_TURNS):
        started = time.perf_counter()
        with client.messages.stream(
            model="claude-sonnet-4-6",
            max_tokens=64,
            messages=[{"role": "user", "content": f"stream {n} [[chunks=5]]"}],
            extra_headers={"X-Session-ID": "bench-cold-1"},
        ) as stream:
            for _ in stream.text_stream:
                first_text.append(time.perf_counter() - started)
                break
    report("cold start (new session)", cold)
    report("warm turn (non-streaming)", warm)
    report("warm turn, first text", first_text)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ccactors-bench-") as state:
        settings = Settings(port=0, offline=True, state_dir=Path(state), log_level="WARNING")

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(serve, settings)
                await trio.to_thread.run_sync(measure, url)
                nursery.cancel_scope.cancel()

        trio.run(run)


if __name__ == "__main__":
    sys.exit(main())
