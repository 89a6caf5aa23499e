"""Latency through the real Claude Code CLI against the offline upstream.

Measures, with the official ``anthropic`` client against ``ccactors serve --offline``:

* new session's first reply without a warm pool (pays the CLI's start-up) and with one
  (adopts an already connected actor);
* warm turn: a later turn on a live session (the proxy's own overhead plus the CLI's),
  and its time to first streamed text;
* resume: the first turn of a hibernated session (a new CLI with ``--resume``).

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

NEW_SESSIONS = 6
WARM_TURNS = 30
IDLE_TTL_S = 2.0
POOL_REFILL_S = 1.5


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"{name:<28} n={len(ms):<3} median {statistics.median(ms):7.1f} ms"
        f"   p90 {percentile(ms, 0.9):7.1f} ms   max {max(ms):7.1f} ms"
    )


def turn(client: anthropic.Anthropic, session: str, prompt: str) -> float:
    """One non-streaming turn; seconds until the whole reply is back."""
    started = time.perf_counter()
    client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=[{"role": "user", "content": prompt}],
        extra_headers={"X-Session-ID": session},
    )
    return time.perf_counter() - started


def first_text(client: anthropic.Anthropic, session: str, prompt: str) -> float:
    """One streamed turn; seconds until its first text delta."""
    started = time.perf_counter()
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=[{"role": "user", "content": prompt}],
        extra_headers={"X-Session-ID": session},
    ) as stream:
        for _ in stream.text_stream:
            elapsed = time.perf_counter() - started
            break
        stream.until_done()
    return elapsed


def measure(url: str, label: str) -> None:
    """New sessions (cold or adopted from the pool), warm turns, resumed sessions."""
    slug = label.replace(" ", "-")
    with anthropic.Anthropic(base_url=url, api_key="bench", max_retries=0, timeout=60) as client:
        new = []
        for n in range(NEW_SESSIONS):
            new.append(turn(client, f"{slug}-{n}", "hello"))
            time.sleep(POOL_REFILL_S)  # let the warm pool refill, as between real users
        report(f"new session, {label}", new)
        if label != "warm pool":
            return
        turn(client, "warm", "warm up")
        report("warm turn", [turn(client, "warm", f"turn {n}") for n in range(WARM_TURNS)])
        streamed = [first_text(client, "warm", f"s {n} [[chunks=5]]") for n in range(WARM_TURNS)]
        report("warm turn, first text", streamed)
        time.sleep(IDLE_TTL_S + 1.5)  # every session above hibernates
        resumed = [turn(client, f"{slug}-{n}", "back") for n in range(NEW_SESSIONS)]
        report("resume (hibernated session)", resumed)


def main() -> None:
    for label, pool in (("no warm pool", 0), ("warm pool", 2)):
        with tempfile.TemporaryDirectory(prefix="ccactors-bench-") as state:
            settings = Settings(
                port=0,
                offline=True,
                state_dir=Path(state),
                warm_pool_size=pool,
                session_idle_ttl_s=IDLE_TTL_S,
                log_level="WARNING",
            )

            async def run(settings: Settings = settings, label: str = label) -> None:
                async with trio.open_nursery() as nursery:
                    url = await nursery.start(serve, settings)
                    await trio.sleep(POOL_REFILL_S * 2)  # the pool fills
                    await trio.to_thread.run_sync(measure, url, label)
                    nursery.cancel_scope.cancel()

            trio.run(run)


if __name__ == "__main__":
    sys.exit(main())
