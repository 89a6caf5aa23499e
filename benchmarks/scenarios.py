"""The latency scenarios, each the direct SDK and ccactors side by side: warm turn,
relay throughput, new session (with and without a warm pool), resume of a hibernated
session, and head-of-line blocking.

Within a scenario the two contenders take turns prompt by prompt, so a change in the
machine's load touches both alike. Each scenario first waits for a quiet machine.
"""

from __future__ import annotations

import functools
from typing import Any

import httpx
import trio

from .direct import Session
from .measure import CpuMeter, TurnTiming, summary_ms, turns_summary
from .plan import Bench
from .server import (
    MODEL,
    Process,
    open_http,
    served_turn,
    start_bare_proxy,
    start_ccactors,
    start_floor,
    wait_for_stats,
)

FIVE = "[[chunks=5]]"  # a short reply, streamed as five deltas
# Seconds between one contender's warm turn and the next's. A CLI goes on working after
# its result (the SDK's CLI, 40 warm turns: ~2 ms of CPU in the first 2 ms, at most
# 15-20 ms), so a turn started at once shared the cores with the previous contender's
# CLI, and which one came before was fixed (before the bare proxy: the HTTP floor, no
# CLI). With the pause, ccactors / bare proxy TTFT read 0.98-1.05 in 8 runs, against
# 0.96-1.14 in 10 without.
SETTLE_S = 0.03


async def wait_pool_full(http: httpx.AsyncClient, size: int) -> None:
    """Until the server's warm pool holds ``size`` connected CLIs (and none is starting
    for a session)."""
    await wait_for_stats(http, lambda s: s["warm_pool_size"] >= size, "a full warm pool")


async def wait_hibernated(http: httpx.AsyncClient, session: str) -> None:
    """Until ``session`` has hibernated (its CLI closed): polls, every 100 ms."""
    # Another process's state: nothing to wait on but the next look.
    while (await http.get(f"/v1/sessions/{session}")).json().get("live", True):  # noqa: ASYNC110
        await trio.sleep(0.1)


def shifted(timing: TurnTiming, seconds: float) -> TurnTiming:
    """``timing`` as seen from ``seconds`` earlier (e.g. from before the CLI's start)."""
    return TurnTiming(
        ttft_s=None if timing.ttft_s is None else timing.ttft_s + seconds,
        turn_s=timing.turn_s + seconds,
        deltas=timing.deltas,
        first_delta_s=None if timing.first_delta_s is None else timing.first_delta_s + seconds,
        last_delta_s=None if timing.last_delta_s is None else timing.last_delta_s + seconds,
        status=timing.status,
        error=timing.error,
    )


async def warm(
    bench: Bench, direct: Session, server: Process, http: httpx.AsyncClient
) -> dict[str, Any]:
    """Warm turns on a live session, ``SETTLE_S`` apart: TTFT and whole turn, five deltas
    each, and the CPU each contender's process spends on a turn (``cpu_ms_per_turn``:
    this process's for the SDK alone, the server process's for the others, their CLIs
    apart). Beside them, taking turns with the two: the HTTP floor (``floor.py``: the
    same stack and client, no CLI, no work) and the bare proxy (``bare_proxy.py``: the
    SDK's events passed through on the same stack, nothing else): the least any proxy on
    this stack can take for a turn, so ``limit`` is bare proxy / SDK. The floor shows
    how much of that is the stack itself; the rest is the CLI sharing the machine with
    the server and the client."""
    floor = start_floor(bench.root / "floor.log")
    bare = None
    try:
        bare = start_bare_proxy(bench.root / "bare-proxy", bench.upstream_url)
        async with open_http(floor.url) as floor_http, open_http(bare.url) as bare_http:
            machine = await bench.quiet.wait("warm turn")
            await direct.turn("warm up")
            await served_turn(http, "warm", "warm up")
            await served_turn(floor_http, None, "warm up")
            await served_turn(bare_http, None, "warm up")
            await wait_pool_full(http, bench.plan.pool)  # no refill competes with the turns
            contenders = {  # name: (take a turn, the process whose CPU is the turn's)
                "direct": (direct.turn, None),  # None: this one
                "ccactors": (functools.partial(served_turn, http, "warm"), server.ps),
                "floor": (functools.partial(served_turn, floor_http, None), floor.ps),
                "bare_proxy": (functools.partial(served_turn, bare_http, None), bare.ps),
            }
            turns: dict[str, list[TurnTiming]] = {name: [] for name in contenders}
            cpu = dict.fromkeys(contenders, 0.0)
            for n in range(bench.plan.warm_turns):
                for name, (take_turn, process) in contenders.items():
                    await trio.sleep(SETTLE_S)
                    with CpuMeter(process) as meter:
                        turns[name].append(await take_turn(f"warm {n} {FIVE}"))
                    cpu[name] += meter.seconds
    finally:
        floor.stop()
        if bare is not None:
            bare.stop()
    results: dict[str, Any] = {"machine": machine}
    for name, taken in turns.items():
        results[name] = turns_summary(taken)
        results[name]["cpu_ms_per_turn"] = round(cpu[name] / len(taken) * 1000, 2)
    results["limit"] = {
        measure: round(proxied / sdk, 3)
        for measure in ("ttft_ms", "turn_ms")
        if (sdk := results["direct"][measure]["p50"])
        and (proxied := results["bare_proxy"][measure]["p50"])
    }
    return results


def _relay_figures(turns: list[TurnTiming], cpu_s: float) -> dict[str, Any]:
    deltas = sum(t.deltas for t in turns)
    span = sum((t.last_delta_s or 0) - (t.first_delta_s or 0) for t in turns)
    return {
        **turns_summary(turns),
        "deltas_per_s": round(deltas / span, 1) if span > 0 else None,
        "cpu_s": round(cpu_s, 4),
        "cpu_us_per_delta": round(cpu_s / deltas * 1e6, 1) if deltas else None,
    }


async def relay(
    bench: Bench, direct: Session, server: Process, http: httpx.AsyncClient
) -> dict[str, Any]:
    """Long streamed replies: deltas per second (first to last delta) and CPU per delta:
    this process's for the SDK alone, the server process's for ccactors (with the
    HTTP client's, in this process, beside it)."""
    machine = await bench.quiet.wait("relay")
    plan = bench.plan
    await direct.turn("warm up")
    await served_turn(http, "warm", "warm up")
    await wait_pool_full(http, plan.pool)
    server_ps = server.ps
    direct_turns: list[TurnTiming] = []
    served: list[TurnTiming] = []
    direct_cpu = server_cpu = client_cpu = 0.0
    for n in range(plan.relay_turns):
        prompt = f"relay {n} [[chunks={plan.relay_chunks}]]"
        with CpuMeter() as mine:
            direct_turns.append(await direct.turn(prompt))
        direct_cpu += mine.seconds
        with CpuMeter(server_ps) as theirs, CpuMeter() as mine:
            served.append(await served_turn(http, "warm", prompt))
        server_cpu += theirs.seconds
        client_cpu += mine.seconds
    ccactors = _relay_figures(served, server_cpu)
    deltas = ccactors["deltas"]
    ccactors["client_cpu_us_per_delta"] = round(client_cpu / deltas * 1e6, 1) if deltas else None
    return {
        "machine": machine,
        "chunks": plan.relay_chunks,
        "direct": _relay_figures(direct_turns, direct_cpu),
        "ccactors": ccactors,
    }


async def new_sessions(
    bench: Bench, http: httpx.AsyncClient, pool: int, prefix: str
) -> tuple[dict[str, Any], list[str]]:
    """New sessions one at a time: a fresh SDK client (connect, first turn, second turn)
    against a new ccactors session (first turn, second turn), the warm pool (if any)
    full before each. With a pool, also a fresh SDK client warmed up as the pool warms
    its CLIs, then its first turn: the best a warm pool can do (``warmed_first_turn``).
    Returns the figures and the SDK's Claude session ids."""
    machine = await bench.quiet.wait(f"new session, warm pool of {pool}")
    connect, first, second, both, warmed = [], [], [], [], []
    served_first, served_second = [], []
    claude_ids = []
    for n in range(bench.plan.new_sessions):
        await wait_pool_full(http, pool)
        async with bench.direct.open() as session:
            first.append(await session.turn(f"new {n} {FIVE}"))
            second.append(await session.turn(f"again {n} {FIVE}"))
        connect.append(session.connect_s)
        both.append(shifted(first[-1], session.connect_s))
        claude_ids.append(session.claude_session_id or "")
        if pool:
            async with bench.direct.open() as session:
                await session.warm_up(MODEL)
                warmed.append(await session.turn(f"warmed {n} {FIVE}"))
        await wait_pool_full(http, pool)
        served_first.append(await served_turn(http, f"{prefix}-{n}", f"new {n} {FIVE}"))
        await wait_pool_full(http, pool)
        served_second.append(await served_turn(http, f"{prefix}-{n}", f"again {n} {FIVE}"))
    result = {
        "machine": machine,
        "warm_pool_size": pool,
        "direct": {
            "connect_ms": summary_ms(connect),
            "first_turn": turns_summary(first),
            "second_turn": turns_summary(second),
            "connect_and_first_turn": turns_summary(both),
            **({"warmed_first_turn": turns_summary(warmed)} if pool else {}),
        },
        "ccactors": {
            "first_turn": turns_summary(served_first),
            "second_turn": turns_summary(served_second),
        },
    }
    return result, claude_ids


async def resume(
    bench: Bench, http: httpx.AsyncClient, prefix: str, claude_ids: list[str]
) -> dict[str, Any]:
    """The first turn of hibernated sessions: an SDK client resuming its Claude session
    (connect with ``resume``, then the turn) against ccactors waking a session."""
    for n in range(len(claude_ids)):
        with trio.fail_after(bench.plan.idle_ttl_s + 60):
            await wait_hibernated(http, f"{prefix}-{n}")
    await wait_pool_full(http, bench.plan.pool)
    machine = await bench.quiet.wait("resume")
    direct_turns, served = [], []
    for n, claude_id in enumerate(claude_ids):
        async with bench.direct.open(resume=claude_id) as session:
            timing = await session.turn(f"back {n} {FIVE}")
        direct_turns.append(shifted(timing, session.connect_s))
        served.append(await served_turn(http, f"{prefix}-{n}", f"back {n} {FIVE}"))
    return {
        "machine": machine,
        "direct": turns_summary(direct_turns),
        "ccactors": turns_summary(served),
    }


async def head_of_line(bench: Bench, http: httpx.AsyncClient) -> dict[str, Any]:
    """Session B's turns alone, then while session A streams a slow reply and A's next
    turn waits in A's mailbox: B's slowdown (ccactors only; the SDK has no sessions to
    share)."""
    plan = bench.plan
    machine = await bench.quiet.wait("head-of-line")
    for session in ("hol-a", "hol-b"):
        await served_turn(http, session, "warm up")
    await wait_pool_full(http, plan.pool)  # the adoptions' refills are over
    alone = [await served_turn(http, "hol-b", f"b {n} {FIVE}") for n in range(plan.hol_turns)]
    slow = f"[[chunks={plan.hol_chunks}]] [[chunk_delay={plan.hol_chunk_delay_s}]]"
    a_turns: list[TurnTiming] = []
    during: list[TurnTiming] = []
    a_streaming = trio.Event()

    async def a_turn(n: int, started: trio.Event | None = None) -> None:
        a_turns.append(await served_turn(http, "hol-a", f"a {n} {slow}", started))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(a_turn, 1, a_streaming)
        await a_streaming.wait()
        nursery.start_soon(a_turn, 2)
        await wait_for_stats(http, lambda s: s["waiting_turns"] >= 1, "A2 queued")
        b_started = trio.current_time()
        for n in range(plan.hol_turns):
            during.append(await served_turn(http, "hol-b", f"b {n} {FIVE}"))
        b_took = trio.current_time() - b_started
    alone_ms = summary_ms([t.turn_s for t in alone])["p50"]
    during_ms = summary_ms([t.turn_s for t in during])["p50"]
    return {
        "machine": machine,
        "ccactors": {
            "b_alone": turns_summary(alone),
            "b_during": turns_summary(during),
            "a": turns_summary(a_turns),
            "b_within_a_s": round(b_took, 3),
            "ratio": round(during_ms / alone_ms, 3) if alone_ms and during_ms else None,
        },
    }


async def run_latency(bench: Bench, wanted: set[str]) -> dict[str, Any]:
    """The latency scenarios in ``wanted`` (``warm``, ``relay``, ``new``, ``resume``,
    ``hol``) on one server with a warm pool, and (``new``) one without."""
    plan = bench.plan
    results: dict[str, Any] = {}
    settings = {"warm_pool_size": plan.pool, "session_idle_ttl_s": plan.idle_ttl_s}
    server = start_ccactors(bench.state_dir("latency"), bench.upstream_url, settings)
    try:
        async with open_http(server.url) as http:
            await wait_pool_full(http, plan.pool)
            if wanted & {"warm", "relay"}:
                async with bench.direct.open() as direct:
                    if "warm" in wanted:
                        results["warm"] = await warm(bench, direct, server, http)
                    if "relay" in wanted:
                        results["relay"] = await relay(bench, direct, server, http)
            if wanted & {"new", "resume"}:
                new, claude_ids = await new_sessions(bench, http, plan.pool, "new")
                results["new"] = {"warm_pool": new}
                if "resume" in wanted:
                    results["resume"] = await resume(bench, http, "new", claude_ids)
            if "hol" in wanted:
                results["hol"] = await head_of_line(bench, http)
    finally:
        server.stop()
    if "new" in wanted:
        settings = {"warm_pool_size": 0, "session_idle_ttl_s": plan.idle_ttl_s}
        server = start_ccactors(bench.state_dir("no-pool"), bench.upstream_url, settings)
        try:
            async with open_http(server.url) as http:
                results["new"]["no_pool"], _ = await new_sessions(bench, http, 0, "cold")
        finally:
            server.stop()
    return results
