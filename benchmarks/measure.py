"""What one benchmark measures with: a turn's timings, summaries, CPU meters and the
wait for a quiet machine."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
import trio

# The marker of a streamed text delta, in both contenders' streams: Anthropic's SSE
# event name through ccactors, the raw event's type through the SDK.
DELTA = "content_block_delta"

# A turn taking longer than this is given up and counted as failed (a hang guard: a
# server that keeps a stream open with keep-alives would otherwise never let go).
TURN_LIMIT_S = 180.0
# A machine whose CPUs were less busy than this (percent of all CPUs) over the last poll
# is quiet, whatever its load average.
QUIET_CPU_PERCENT = 20.0


@dataclass
class TurnTiming:
    """One turn as its caller saw it. Times in seconds from sending the prompt.

    ``ttft_s``: until the first text delta (``None`` if none came); ``turn_s``: until
    the turn's end (the SDK's result message, or the end of the SSE stream);
    ``deltas``: text deltas received; ``first_delta_s``/``last_delta_s``: when the
    first and last arrived (relay rate); ``status``: the HTTP status (200 for the SDK),
    ``error``: an error event or exception text, else ``None``.
    """

    ttft_s: float | None = None
    turn_s: float = 0.0
    deltas: int = 0
    first_delta_s: float | None = None
    last_delta_s: float | None = None
    status: int = 200
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and self.ttft_s is not None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    """``n``, ``p50``, ``p90``, ``p99``, ``max`` of durations, in milliseconds (``None``
    for an empty list)."""
    if not seconds:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 0.5), 2),
        "p90": round(percentile(ms, 0.9), 2),
        "p99": round(percentile(ms, 0.99), 2),
        "max": round(max(ms), 2),
    }


def turns_summary(turns: list[TurnTiming]) -> dict[str, Any]:
    """TTFT and whole-turn summaries of the successful turns, and the failures by kind."""
    ok = [t for t in turns if t.ok]
    failures: dict[str, int] = {}
    for t in turns:
        if not t.ok:
            kind = str(t.status) if t.status != 200 else "error"
            failures[kind] = failures.get(kind, 0) + 1
    return {
        "turns": len(turns),
        "ttft_ms": summary_ms([t.ttft_s for t in ok if t.ttft_s is not None]),
        "turn_ms": summary_ms([t.turn_s for t in ok]),
        "deltas": sum(t.deltas for t in turns),
        "failures": failures,
    }


def cpu_seconds(process: psutil.Process | None = None) -> float:
    """User plus system CPU time of ``process`` itself (not its children), or of this
    process when ``None``: the CLIs' own CPU is never counted."""
    if process is None:
        return time.process_time()
    times = process.cpu_times()
    return times.user + times.system


class CpuMeter:
    """CPU seconds one process spends between ``start()`` and ``stop()``."""

    def __init__(self, process: psutil.Process | None = None) -> None:
        self.process = process
        self._started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._started = cpu_seconds(self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = cpu_seconds(self.process) - self._started


@dataclass
class Quiet:
    """Waits, before each timed block, for a quiet machine: the 1-minute load average
    below ``max_load``, or the CPUs' use over the last poll below ``QUIET_CPU_PERCENT``
    (the load average trails by a minute: after a storm of CLIs it stays high long
    after the CPUs went idle); for at most ``max_wait_s`` seconds, and says what
    happened.

    A block measured after giving up is marked ``busy``: its figures were taken on a
    machine doing other work.
    """

    max_load: float
    max_wait_s: float
    poll_s: float = 2.0
    created: float = field(default_factory=time.monotonic)

    async def wait(self, block: str) -> dict[str, Any]:
        """Wait (bounded); returns ``load_avg`` and ``cpu_percent`` (when the block
        starts; the latter ``None`` if not waited), ``waited_s`` and ``busy``. Prints
        one line."""
        started = time.monotonic()
        psutil.cpu_percent(None)  # the CPU use is measured from here to the next call
        load, cpu = os.getloadavg()[0], None

        def busy() -> bool:
            return load >= self.max_load and (cpu is None or cpu >= QUIET_CPU_PERCENT)

        while busy() and time.monotonic() - started < self.max_wait_s:
            await trio.sleep(min(self.poll_s, self.max_wait_s))
            load, cpu = os.getloadavg()[0], psutil.cpu_percent(None)
        waited = time.monotonic() - started
        measured = f"load {load:.2f}" + ("" if cpu is None else f", CPU {cpu:.0f}%")
        if busy():
            note = f"gave up waiting after {waited:.0f} s: {measured} (busy machine)"
        elif waited >= 0.5:
            note = f"waited {waited:.0f} s for a quiet machine: {measured}"
        else:
            note = measured
        print(f"[{time.monotonic() - self.created:5.0f} s] {block}: {note}", flush=True)
        return {
            "load_avg": round(load, 2),
            "cpu_percent": cpu,
            "waited_s": round(waited, 1),
            "busy": busy(),
        }
