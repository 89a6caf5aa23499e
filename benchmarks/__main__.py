"""``python -m benchmarks``: ccactors side by side with the Claude Agent SDK alone.

Runs, in one go, against one offline upstream process and the same Claude Code CLI,
the direct SDK (``ClaudeSDKClient`` in this process, ccactors' CLI flags) and ccactors
(``ccactors serve`` as a subprocess), and prints a table: each scenario's figures,
their ratio, issue 12's figures for reference and its targets. Writes every figure as
JSON (``--json``; by default under ``benchmarks/results/``).

    just bench                        # every scenario, a few minutes
    just bench --quick                # tiny counts: a smoke test
    just bench --scenario warm --scenario relay
    just load --sessions 32 --turns 10 --live 32   # the load scenario alone
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import trio

from actors import BUNDLED_CLI

from .direct import Direct
from .load import run_load
from .measure import Quiet
from .plan import SCENARIOS, Bench, Plan
from .report import rows, table
from .scenarios import run_latency
from .server import Stopped, start_upstream, until_signal

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="ccactors side by side with the Claude Agent SDK alone "
        "(docs/reference/benchmarks.md)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts (CI smoke test)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable; resume includes new; default: all)",
    )
    parser.add_argument("--sessions", type=int, help="load: sessions at once (default 16)")
    parser.add_argument("--turns", type=int, help="load: turns per session (default 10)")
    parser.add_argument("--live", type=int, help="load: max_live_sessions (default: sessions)")
    parser.add_argument("--pool", type=int, help="warm_pool_size (default 2)")
    parser.add_argument(
        "--memory-loads",
        type=int,
        help="load: untimed loads alike after it, for the memory figure (default 8)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--max-load",
        type=float,
        default=max(1.0, (os.cpu_count() or 2) / 2),
        help="a quiet machine's 1-minute load average is below this (default: half the CPUs)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds to wait for a quiet machine before each block (default 60; 5 --quick)",
    )
    return parser.parse_args(argv)


def plan_of(args: argparse.Namespace) -> Plan:
    plan = Plan.quick() if args.quick else Plan()
    overrides = {
        name: getattr(args, name)
        for name in ("sessions", "turns", "live", "pool", "memory_loads")
        if getattr(args, name) is not None
    }
    return replace(plan, **overrides)


def cli_version() -> str:
    try:
        done = subprocess.run(
            [str(BUNDLED_CLI), "--version"], capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The scenarios ``args`` ask for; their results.

    Ctrl-C (SIGINT) or SIGTERM cancels the run, so every server, CLI and upstream it
    started is stopped on the way out; then ``Stopped`` is raised.
    """
    return await until_signal(run_scenarios, args, root)


async def run_scenarios(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    wanted = set(args.scenario or SCENARIOS)
    if "resume" in wanted:
        wanted.add("new")
    plan = plan_of(args)
    wait = args.quiet_wait if args.quiet_wait is not None else (5.0 if args.quick else 60.0)
    upstream = start_upstream(root / "upstream.log")
    try:
        bench = Bench(
            plan=plan,
            quiet=Quiet(max_load=args.max_load, max_wait_s=wait),
            upstream_url=upstream.url,
            direct=Direct.create(root / "direct", upstream.url),
            root=root,
        )
        results: dict[str, Any] = {}
        if wanted - {"load"}:
            results.update(await run_latency(bench, wanted))
        if "load" in wanted:
            results.update(await run_load(bench))
        return results
    finally:
        upstream.stop()


def keep_logs(root: Path, into: Path) -> None:
    """Copy the servers' and the upstream's logs (``root/*.log``) to ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    for log in root.glob("*.log"):
        shutil.copyfile(log, into / log.name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    meta = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "quick": args.quick,
        "claude_code": cli_version(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "max_load": args.max_load,
        "cpu_measured": (
            "direct SDK: this process's CPU time (time.process_time), which runs only the "
            "SDK during its blocks; ccactors: the server process's user+system CPU time "
            "(psutil), its CLIs excluded; the HTTP client's CPU (this process) apart"
        ),
    }
    print(f"ccactors benchmark: {meta['claude_code']}, {meta['cpus']} CPUs", flush=True)
    path = args.json or RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # CLIs closing late may still write into it: its removal is best effort.
    with tempfile.TemporaryDirectory(prefix="ccactors-bench-", ignore_cleanup_errors=True) as root:
        try:
            results = trio.run(run, args, Path(root))
        except Stopped as stopped:
            print(f"stopped ({stopped.signal.name}): no results", flush=True)
            return 128 + stopped.signal
        finally:
            keep_logs(Path(root), path.with_suffix(".logs"))
    meta["duration_s"] = round(time.time() - started, 1)
    meta["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table_rows = rows(results)
    print()
    print(table(table_rows))
    document = {"meta": meta, "plan": asdict(plan_of(args)), "rows": table_rows, **results}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
    print(f"\n{meta['duration_s']} s; results: {path}, logs: {path.with_suffix('.logs')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
