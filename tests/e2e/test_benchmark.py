"""End to end: the side-by-side benchmark (``just bench --quick``) runs every scenario
through the real CLI and writes a well-formed result. No timing is asserted: timing
goals belong to the benchmark's own table, not to CI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from app._settings import PROJECT_ROOT

from .conftest import claude_cli

pytestmark = pytest.mark.e2e

SCENARIOS = ("warm", "relay", "new", "resume", "hol", "load", "open", "memory")
ROWS = {
    "warm_ttft",
    "warm_turn",
    "warm_cpu",
    "relay",
    "cpu_per_delta",
    "load_ttft_p99",
    "load_ttft_p50",
    "load_wall",
    "load_failures",
    "load_cpu_turn",
    "load_cpu_delta",
    "load_rss",
    "open",
    "new_pool",
    "new_pool_vs_warm",
    "new_cold",
    "first_turn_extra",
    "resume",
    "hol",
    "memory",
    "memory_first",
    "memory_store",
}


def test_quick_benchmark_measures_every_scenario_and_writes_json(tmp_path: Path) -> None:
    """``python -m benchmarks --quick`` completes, prints the side-by-side table, and
    its JSON holds every scenario with figures for both contenders, every table row,
    the HTTP floor's, the bare proxy's and the warmed-up SDK client's turns and the
    limits taken from them, each warm contender's CPU per turn, and every streamed
    delta the relay asked for."""
    claude_cli()
    path = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--quiet-wait", "0", "--json", str(path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "direct SDK" in done.stdout and "ccactors" in done.stdout

    result = json.loads(path.read_text())
    assert set(SCENARIOS) <= result.keys()
    assert {row["key"] for row in result["rows"]} == ROWS
    for row in result["rows"]:
        assert row["ccactors"] is not None, row
    plan = result["plan"]
    for scenario in ("warm", "relay", "resume", "load"):
        assert result[scenario]["direct"]["turns"] > 0, scenario
        assert result[scenario]["ccactors"]["turns"] > 0, scenario
    warm = result["warm"]
    assert warm["floor"]["deltas"] == 5 * warm["floor"]["turns"] > 0
    bare = warm["bare_proxy"]
    assert bare["deltas"] == 5 * bare["turns"] > 0 and not bare["failures"]
    for measure in ("ttft_ms", "turn_ms"):
        sdk = warm["direct"][measure]["p50"]
        assert warm["limit"][measure] == round(bare[measure]["p50"] / sdk, 3) > 0, measure
    limited = {row["key"]: row["limit"] for row in result["rows"] if row["limit"]}
    assert limited.keys() == {
        "warm_ttft",
        "warm_turn",
        "warm_cpu",
        "cpu_per_delta",
        "new_pool_vs_warm",
    }
    # (psutil counts another process's CPU in clock ticks: a few quick turns may read 0)
    assert all(warm[side]["cpu_ms_per_turn"] >= 0 for side in ("ccactors", "bare_proxy", "floor"))
    assert warm["direct"]["cpu_ms_per_turn"] > 0
    assert limited["warm_cpu"]["value"] == bare["cpu_ms_per_turn"]
    assert result["new"]["warm_pool"]["direct"]["warmed_first_turn"]["turns"] > 0
    assert limited["warm_ttft"]["value"] == warm["limit"]["ttft_ms"]
    relay = result["relay"]
    assert relay["direct"]["deltas"] == relay["ccactors"]["deltas"]
    assert relay["ccactors"]["deltas"] == plan["relay_turns"] * plan["relay_chunks"]
    load = result["load"]
    assert len(load["ccactors"]["turns_detail"]) == plan["sessions"] * plan["turns"]
    # The SDK's load ran before and after ccactors': its figures are over both.
    assert len(load["direct"]["turns_detail"]) == 2 * plan["sessions"] * plan["turns"]
    walls = load["direct"]["wall_ms_each"]
    assert load["direct"]["wall_ms"] == pytest.approx(sum(walls) / 2, abs=0.1) and min(walls) > 0
    memory = result["memory"]["ccactors"]
    assert memory["sessions"] == plan["sessions"]
    by_load = memory["rss_kib_per_session_by_load"]
    assert len(by_load) == 1 + plan["memory_loads"] >= 2
    if plan["memory_loads"] == 1:  # --quick: the one untimed load alone
        assert memory["rss_kib_per_more_session"] == by_load[-1]


def test_two_versions_are_compared_side_by_side_and_the_worktree_removed(tmp_path: Path) -> None:
    """``python -m benchmarks.compare REV`` serves this tree's ccactors, ``REV``'s (from
    a git worktree) and the bare proxy, takes warm turns on each, writes each run's p50s
    and the medians of their ratios, and leaves no worktree and no process behind."""
    claude_cli()
    path = tmp_path / "compare.json"
    worktrees = ["git", "-C", str(PROJECT_ROOT), "worktree", "list", "--porcelain"]
    before = subprocess.run(worktrees, capture_output=True, text=True, check=True).stdout
    args = ["HEAD", "--runs", "1", "--turns", "2", "--json", str(path)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ttft this / rev" in done.stdout
    result = json.loads(path.read_text())
    (run,) = result["runs"]
    for side in ("this", "rev", "bare_proxy"):
        assert run[side]["failed"] == 0, side
        assert 0 < run[side]["ttft"] <= run[side]["turn"], side
    assert result["summary"]["ttft this / rev"] == round(
        run["this"]["ttft"] / run["rev"]["ttft"], 3
    )
    after = subprocess.run(worktrees, capture_output=True, text=True, check=True).stdout
    assert after == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_benchmark_and_everything_it_started(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A benchmark stopped by SIGTERM (as ``timeout`` or a CI runner stops it) or Ctrl-C
    stops what it started first: the offline upstream, the ccactors server and its CLIs,
    the HTTP floor, the bare proxy and its CLI, the direct SDK's CLI. None outlives it,
    and it exits with 128 plus the signal's number."""
    claude_cli()
    args = ["--quick", "--quiet-wait", "0", "--scenario", "warm", "--json", tmp_path / "b.json"]
    bench = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", *map(str, args)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert bench.stdout is not None
        for line in bench.stdout:  # every contender is up once the warm block starts
            if "warm turn" in line:
                break
        started = psutil.Process(bench.pid).children(recursive=True)
        commands = " ".join(" ".join(p.cmdline()) for p in started)
        assert "serve" in commands and "bare_proxy" in commands and "claude" in commands
        bench.send_signal(signum)
        assert bench.wait(timeout=120) == 128 + signum
        assert f"stopped ({signum.name})" in bench.stdout.read()
    finally:
        bench.kill()
        bench.wait()
        bench.stdout.close()
    deadline = time.monotonic() + 30
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.cmdline() for p in alive]
