"""Two versions of ccactors served side by side: ``python -m benchmarks.compare REV``.

A change to a warm turn worth a millisecond or two cannot be seen in two runs of ``just
bench`` taken apart: from one hour to the next the machine moves a run's ratios by
several percent. Here both versions serve at once and take turns, so the hour touches
both alike. ``REV`` (any git revision) is checked out into a temporary worktree, its
bytecode compiled as ``just setup`` compiles this tree's, and run with this tree's
Python environment (so ``REV`` must lock the same packages). Against one offline
upstream, each of ``--runs`` runs starts fresh processes: ccactors from this tree,
ccactors from ``REV`` (no warm pool: the session's CLI alone) and the bare proxy
(``bare_proxy.py``); then ``--turns`` warm turns go to each in turn (the two versions'
order alternating), ``SETTLE_S`` apart. Printed per run: each one's TTFT and whole
turn (p50, ms); over the runs: the median of each run's ratio, this tree / ``REV`` and
each / the bare proxy. ``--json PATH`` writes it all. Ctrl-C or SIGTERM stops every
process it started and removes the worktree (exit code 128 plus the signal's number).

    just bench-compare HEAD~1
    just bench-compare main --runs 10 --turns 60
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from app._settings import PROJECT_ROOT

from .measure import TurnTiming, turns_summary
from .scenarios import FIVE, SETTLE_S
from .server import (
    Stopped,
    open_http,
    served_turn,
    start_bare_proxy,
    start_ccactors,
    start_upstream,
    until_signal,
)

SIDES = ("this", "rev", "bare_proxy")
# Untimed turns on each fresh server first, then a pause: a new CLI keeps working for
# ~1.2-1.7 s after it connects and after its first turn (docs/reference/benchmarks.md).
WARM_UP_TURNS = 3
SETTLE_AFTER_START_S = 3.0


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """``rev`` checked out (detached) into a temporary git worktree, removed afterwards.

    Raises:
        subprocess.CalledProcessError: ``rev`` is no revision of this repository.
    """
    with tempfile.TemporaryDirectory(prefix="ccactors-compare-") as parent:
        path = Path(parent) / "tree"
        git = ["git", "-C", str(PROJECT_ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", str(path), rev], check=True)
        try:
            compileall.compile_dir(path / "app", quiet=1)
            compileall.compile_dir(path / "actors", quiet=1)
            yield path
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the runs, the median of each run's ratios: ``this / rev``, ``this / bare
    proxy`` and ``rev / bare proxy``, for ``ttft`` and ``turn``; ``None`` where a run
    lacks a figure."""
    out: dict[str, Any] = {}
    for measure in ("ttft", "turn"):
        for a, b in (("this", "rev"), ("this", "bare_proxy"), ("rev", "bare_proxy")):
            ratios = [
                run[a][measure] / run[b][measure]
                for run in runs
                if run[a][measure] and run[b][measure]
            ]
            out[f"{measure} {a} / {b}"] = round(statistics.median(ratios), 3) if ratios else None
    return out


async def one_run(root: Path, upstream_url: str, tree: Path, turns: int) -> dict[str, Any]:
    """Fresh servers, ``WARM_UP_TURNS`` untimed turns and a pause, then ``turns`` warm
    turns each, taking turns; each one's p50s and failures."""
    settings = {"warm_pool_size": 0}
    servers = {
        "this": start_ccactors(root / "this", upstream_url, settings),
        "rev": start_ccactors(root / "rev", upstream_url, settings, tree=tree),
        "bare_proxy": start_bare_proxy(root / "bare-proxy", upstream_url),
    }
    try:
        taken: dict[str, list[TurnTiming]] = {side: [] for side in SIDES}
        async with (
            open_http(servers["this"].url) as this,
            open_http(servers["rev"].url) as rev,
            open_http(servers["bare_proxy"].url) as bare,
        ):
            clients = {"this": (this, "warm"), "rev": (rev, "warm"), "bare_proxy": (bare, None)}
            for _ in range(WARM_UP_TURNS):
                for http, session in clients.values():
                    await served_turn(http, session, "warm up")
            await trio.sleep(SETTLE_AFTER_START_S)
            for n in range(turns):
                order = ("this", "rev", "bare_proxy") if n % 2 else ("rev", "this", "bare_proxy")
                for side in order:
                    await trio.sleep(SETTLE_S)
                    http, session = clients[side]
                    taken[side].append(await served_turn(http, session, f"warm {n} {FIVE}"))
    finally:
        for server in servers.values():
            server.stop()
    figures = {side: turns_summary(timings) for side, timings in taken.items()}
    return {
        side: {
            "ttft": summary_["ttft_ms"]["p50"],
            "turn": summary_["turn_ms"]["p50"],
            "failed": sum(summary_["failures"].values()),
        }
        for side, summary_ in figures.items()
    }


async def measure(tree: Path, runs: int, turns: int) -> list[dict[str, Any]]:
    """``runs`` runs of ``one_run`` against one offline upstream; prints each run."""
    with tempfile.TemporaryDirectory(prefix="ccactors-compare-") as tmp:
        root = Path(tmp)
        upstream = start_upstream(root / "upstream.log")
        results: list[dict[str, Any]] = []
        try:
            for number in range(runs):
                run_root = root / f"run-{number}"
                run_root.mkdir()
                run = await one_run(run_root, upstream.url, tree, turns)
                results.append(run)
                print(f"run {number}: " + "; ".join(_side(run, side) for side in SIDES), flush=True)
        finally:
            upstream.stop()
    return results


def _side(run: dict[str, Any], side: str) -> str:
    figures = run[side]
    failed = f", {figures['failed']} failed" if figures["failed"] else ""
    return f"{side} TTFT {figures['ttft']} ms, turn {figures['turn']} ms{failed}"


def main(rev: str, runs: int, turns: int, json_path: Path | None) -> int:
    """Compare; the exit code (128 plus the signal's number if stopped by one)."""
    with worktree(rev) as tree:
        try:
            results = trio.run(until_signal, measure, tree, runs, turns)
        except Stopped as stopped:
            print(f"stopped ({stopped.signal.name}): no results", flush=True)
            return 128 + stopped.signal
    medians = summary(results)
    print(f"this tree against {rev}, medians of the runs' ratios (p50s of {turns} turns):")
    for name, ratio in medians.items():
        print(f"  {name}: {ratio}")
    if json_path is not None:
        document = {"rev": rev, "turns": turns, "runs": results, "summary": medians}
        json_path.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the git revision to compare this tree with")
    parser.add_argument("--runs", type=int, default=10, help="runs of fresh servers (10)")
    parser.add_argument("--turns", type=int, default=60, help="warm turns a run each (60)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    arguments = parser.parse_args()
    sys.exit(main(arguments.rev, arguments.runs, arguments.turns, arguments.json))
