"""Concurrent load, N sessions x M streamed turns all at once, side by side: N SDK clients
opened at once in this process, then N ccactors sessions opened at once through one
server (``max_live_sessions`` = N unless ``--live`` says otherwise), then the SDK's N
again; the SDK's figures are over both of its runs. From the same run:
opening N sessions at once (the first turns: refusals, TTFT) and the memory a
hibernated session costs the server.

Each session's first turn includes its CLI's start-up for both contenders (the SDK's
connect; a ccactors session adopting a warm actor or starting one).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import trio

from .measure import CpuMeter, TurnTiming, turns_summary
from .plan import Bench
from .scenarios import FIVE, shifted, wait_hibernated, wait_pool_full
from .server import Process, directory_bytes, open_http, served_turn, start_ccactors

DELTAS_PER_TURN = 5


def _row(timing: TurnTiming, session: int, turn: int, at_s: float) -> dict[str, Any]:
    return {"session": session, "turn": turn, "at_s": round(at_s, 4), **timing.as_dict()}


def _figures(rows: list[dict[str, Any]], wall_s: float, cpu_s: float) -> dict[str, Any]:
    turns = [TurnTiming(**{k: r[k] for k in TurnTiming.__dataclass_fields__}) for r in rows]
    ok = [t for t in turns if t.ok]
    deltas = sum(t.deltas for t in ok)
    first = [t for t, r in zip(turns, rows, strict=True) if r["turn"] == 0]
    return {
        **turns_summary(turns),
        "wall_ms": round(wall_s * 1000, 1),
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_turn": round(cpu_s / len(ok) * 1e3, 2) if ok else None,
        "cpu_us_per_delta": round(cpu_s / deltas * 1e6, 1) if deltas else None,
        "first_turns": turns_summary(first),
        "refusals": sum(1 for t in turns if t.status in (429, 503)),
        "first_turn_refusals": sum(1 for t in first if t.status in (429, 503)),
    }


async def direct_load(bench: Bench) -> dict[str, Any]:
    """N SDK clients connected at once, each then running M turns back to back."""
    plan = bench.plan
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()

    async def one(s: int) -> None:
        opened = time.perf_counter()
        try:
            async with bench.direct.open() as session:
                for n in range(plan.turns):
                    at = time.perf_counter()
                    timing = await session.turn(f"turn {n} {FIVE}")
                    if n == 0:  # from before the CLI's start, as through ccactors
                        timing, at = shifted(timing, at - opened), opened
                    rows.append(_row(timing, s, n, at - started))
        except Exception as exc:  # a CLI that did not start: counted, not fatal
            rows.append(_row(TurnTiming(status=0, error=repr(exc)), s, 0, opened - started))

    with CpuMeter() as cpu:
        async with trio.open_nursery() as nursery:
            for s in range(plan.sessions):
                nursery.start_soon(one, s)
    return {**_figures(rows, time.perf_counter() - started, cpu.seconds), "turns_detail": rows}


async def served_load(bench: Bench, server: Process, prefix: str = "load") -> dict[str, Any]:
    """N ccactors sessions (``<prefix>-<n>``), each sending M streamed turns back to
    back, all at once; the server's CPU time and its RSS (sampled every 0.25 s)
    beside."""
    plan = bench.plan
    rows: list[dict[str, Any]] = []
    peak_rss = server.rss_bytes()

    async def sample_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, server.rss_bytes())
            await trio.sleep(0.25)

    async def one(http: Any, s: int) -> None:
        for n in range(plan.turns):
            at = time.perf_counter()
            timing = await served_turn(http, f"{prefix}-{s}", f"turn {n} {FIVE}")
            rows.append(_row(timing, s, n, at - started))

    async with (
        open_http(server.url, connections=plan.sessions + 4) as http,
        trio.open_nursery() as sampler,
    ):
        sampler.start_soon(sample_rss)
        started = time.perf_counter()
        with CpuMeter(server.ps) as cpu, CpuMeter() as client_cpu:
            async with trio.open_nursery() as nursery:
                for s in range(plan.sessions):
                    nursery.start_soon(one, http, s)
        wall = time.perf_counter() - started
        sampler.cancel_scope.cancel()
    figures = _figures(rows, wall, cpu.seconds)
    return {
        **figures,
        "client_cpu_s": round(client_cpu.seconds, 3),
        "rss_peak_mib": round(peak_rss / 2**20, 1),
        "rss_after_mib": round(server.rss_bytes() / 2**20, 1),
        "turns_detail": rows,
    }


def both_runs(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The figures of two runs of the same load as one: TTFT and turn percentiles over
    the turns of both (``turns_detail``: the first run's rows, then the second's), the
    wall time their mean (``wall_ms_each``: each), CPU per turn and per delta over
    both."""
    rows = [*first["turns_detail"], *second["turns_detail"]]
    wall_s = (first["wall_ms"] + second["wall_ms"]) / 2 / 1000
    figures = _figures(rows, wall_s, first["cpu_s"] + second["cpu_s"])
    each = [first["wall_ms"], second["wall_ms"]]
    return {**figures, "wall_ms_each": each, "turns_detail": rows}


def _disk(server_state: Any) -> dict[str, int]:
    store = sum(p.stat().st_size for p in server_state.glob("sessions.sqlite3*"))
    return {"store": store, "transcripts": directory_bytes(server_state / "claude" / "projects")}


async def _hibernated_load(bench: Bench, server: Process, prefix: str) -> None:
    """A load as the timed one (its figures unused) on new sessions, then until every
    one has hibernated and the warm pool is full again."""
    await served_load(bench, server, prefix)
    async with open_http(server.url) as http:
        await _until_hibernated(http, bench, prefix)


async def _until_hibernated(http: Any, bench: Bench, prefix: str) -> None:
    with trio.fail_after(bench.plan.idle_ttl_s + 120):
        for s in range(bench.plan.sessions):
            await wait_hibernated(http, f"{prefix}-{s}")
    await wait_pool_full(http, min(bench.plan.pool, bench.plan.max_live))
    await trio.sleep(1)  # closing CLIs' last buffers are read and freed


# Untimed loads whose growth makes the memory figure: the last ones, when there are more.
LATER_LOADS = 5


def kib_per_more_session(rss: list[int], sessions: int) -> float:
    """What one more hibernated session costs, in KiB: from ``rss`` (bytes: before the
    timed load, then after it and after each untimed load of ``sessions`` sessions), the
    growth over the last ``LATER_LOADS`` untimed loads, never the first (which still
    grows more: see docs/reference/benchmarks.md), per session; the last load's alone
    if there are fewer. RSS moves in pages and arenas by about as much as one load's
    sessions take, either way: over several loads the noise is a smaller part of the
    figure."""
    later = rss[max(2, len(rss) - LATER_LOADS - 1) :] if len(rss) > 3 else rss[-2:]
    return round((later[-1] - later[0]) / 1024 / sessions / (len(later) - 1), 1)


async def run_load(bench: Bench) -> dict[str, Any]:
    """The load scenario: direct, then ccactors, then direct again (``both_runs``), then
    the server's memory once every load session has hibernated, and once as many
    sessions again have, in loads alike (``plan.memory_loads``)."""
    plan = bench.plan
    settings = {
        "max_live_sessions": plan.max_live,
        "warm_pool_size": min(plan.pool, plan.max_live),
        "max_turns_per_key": max(64, 2 * plan.sessions),
        "session_idle_ttl_s": plan.idle_ttl_s,
    }
    state = bench.state_dir("load")
    server = start_ccactors(state, bench.upstream_url, settings)
    try:
        async with open_http(server.url, connections=plan.sessions + 4) as http:
            await wait_pool_full(http, settings["warm_pool_size"])
            rss = [server.rss_bytes()]
            disk_before = _disk(state)
            machine = await bench.quiet.wait(f"load, {plan.sessions} x {plan.turns} SDK")
            direct = await direct_load(bench)
            served_machine = await bench.quiet.wait(
                f"load, {plan.sessions} x {plan.turns} ccactors"
            )
            served = await served_load(bench, server)
            await _until_hibernated(http, bench, "load")
            rss.append(server.rss_bytes())
            disk_after = _disk(state)
            # The SDK's load again, ccactors' CLIs closed: the two bracket ccactors' in
            # time, so that a change in the machine's speed during the scenario does not
            # land on one side only (one SDK load before ccactors' measured 0.86x to
            # 1.24x wall time in three runs of the same code).
            await bench.quiet.wait(f"load, {plan.sessions} x {plan.turns} SDK again")
            direct = both_runs(direct, await direct_load(bench))
            # What one more hibernated session costs, once the one-time growth of the
            # first loads (caches, allocator arenas) is behind the server: as many
            # sessions again, in loads of the same shape; those after the first count
            # (the second load still grows by 24-43 KiB a session, the third and later
            # ones by about the same as each other).
            for n in range(plan.memory_loads):
                await _hibernated_load(bench, server, f"more{n}")
                rss.append(server.rss_bytes())
    finally:
        server.stop()
    per_session = [round((b - a) / 1024 / plan.sessions, 1) for a, b in itertools.pairwise(rss)]
    memory = {
        "measured": (
            "growth of the server process's RSS (its CLIs excluded) from before a load "
            "of N sessions x M turns (warm pool full) to after every one of its sessions "
            "hibernated (warm pool full again), per session: the timed load first "
            "(rss_kib_per_session), then as many new sessions in each of memory_loads "
            "loads alike; rss_kib_per_more_session, the cost of one more hibernated "
            "session once the first loads' one-time growth is behind, is the growth "
            f"over the last {LATER_LOADS} untimed loads, never the first (the last alone "
            "if there are fewer than two), per session; "
            "the session store's and the CLIs' transcripts' growth over the timed load"
        ),
        "sessions": plan.sessions,
        "turns_each": plan.turns,
        "memory_loads": plan.memory_loads,
        "rss_mib_after_each_load": [round(r / 2**20, 1) for r in rss],
        "rss_kib_per_session_by_load": per_session,
        "rss_kib_per_session": per_session[0],
        "rss_kib_per_more_session": (
            kib_per_more_session(rss, plan.sessions) if plan.memory_loads else None
        ),
        "store_kib_per_session": round(
            (disk_after["store"] - disk_before["store"]) / 1024 / plan.sessions, 1
        ),
        "transcript_kib_per_session": round(
            (disk_after["transcripts"] - disk_before["transcripts"]) / 1024 / plan.sessions, 1
        ),
    }
    return {
        "load": {
            "machine": {"direct": machine, "ccactors": served_machine},
            "sessions": plan.sessions,
            "turns": plan.turns,
            "settings": settings,
            "direct": direct,
            "ccactors": served,
        },
        "open": {
            "machine": served_machine,
            "sessions": plan.sessions,
            "max_live_sessions": plan.max_live,
            "warm_pool_size": settings["warm_pool_size"],
            "direct": {
                "ttft_ms": direct["first_turns"]["ttft_ms"],
                "refusals": direct["first_turn_refusals"],
            },
            "ccactors": {
                "ttft_ms": served["first_turns"]["ttft_ms"],
                "refusals": served["first_turn_refusals"],
            },
        },
        "memory": {"ccactors": memory},
    }
