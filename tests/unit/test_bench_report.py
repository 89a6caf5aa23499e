"""The benchmark's table: a memory figure that did not show is not a target met; a
limit is shown beside a target and beside a plain figure; the SDK's two loads make one
baseline; a comparison of two versions is the median of each run's ratios."""

from __future__ import annotations

import pytest

from benchmarks.compare import summary
from benchmarks.load import _figures, _row, both_runs, kib_per_more_session
from benchmarks.measure import TurnTiming
from benchmarks.report import rows, table


@pytest.mark.parametrize(
    ("kib", "met"), [(16.0, True), (20.0, True), (20.8, False), (0.0, False), (-20.8, False)]
)
def test_memory_per_hibernated_session_meets_the_target_only_when_it_grew(
    kib: float, met: bool
) -> None:
    """RSS can shrink over the memory loads (the allocator gives pages back): a growth
    of 0 or less measured nothing, and reads as not met rather than within 20 KiB."""
    results = {"memory": {"ccactors": {"rss_kib_per_more_session": kib}}}
    (row,) = [row for row in rows(results) if row["key"] == "memory"]
    assert row["ccactors"] == kib
    assert row["met"] is met


def test_one_more_session_is_the_growth_over_the_later_loads() -> None:
    """The timed load and the first untimed ones (one-time growth) are left out: the
    last five loads' growth is shared by all their sessions (fewer, never the first
    untimed one, if there are fewer); with one untimed load, it alone counts."""
    kib = 1024
    # before, after the timed load, then after each of eight untimed loads of 16
    eight = [0, 200, 240, 280, 300, 310, 320, 330, 340, 350]
    assert kib_per_more_session([k * 16 * kib for k in eight], 16) == 10.0  # (350 - 300) / 5
    # ... or of three
    rss = [0, 200 * 16 * kib, 230 * 16 * kib, 260 * 16 * kib, 250 * 16 * kib]
    assert kib_per_more_session(rss, 16) == 10.0  # (250 - 230) / 2 loads
    assert kib_per_more_session(rss[:3], 16) == 30.0
    assert kib_per_more_session([0, 16 * kib, 8 * kib], 16) == -0.5


def test_the_sdks_two_loads_count_as_one() -> None:
    """The SDK's load runs before and after ccactors': its figures are over the turns of
    both, its wall time the mean of the two, its CPU per turn over both."""

    def run(ttfts: list[float], wall_s: float, cpu_s: float) -> dict:
        timings = [TurnTiming(ttft_s=t, turn_s=t + 0.1, deltas=5) for t in ttfts]
        rows = [_row(t, s, 1, 0.0) for s, t in enumerate(timings)]
        return {**_figures(rows, wall_s, cpu_s), "turns_detail": rows}

    both = both_runs(run([1.0, 1.0], 20.0, 0.02), run([3.0, 3.0], 30.0, 0.06))
    assert both["turns"] == 4
    assert both["ttft_ms"]["p50"] in (1000.0, 3000.0) and both["ttft_ms"]["p99"] == 3000.0
    assert both["wall_ms"] == 25_000.0 and both["wall_ms_each"] == [20_000.0, 30_000.0]
    assert both["cpu_ms_per_turn"] == 20.0  # 80 ms over 4 turns


def test_a_limit_stands_beside_a_figure_without_a_target() -> None:
    """The warm turn's CPU has no target: the bare proxy's server CPU is shown beside
    ccactors' (in the row's unit) to compare with, and nothing is said met or past."""
    cpu = {"direct": 4.0, "ccactors": 8.0, "bare_proxy": 6.0}
    results = {"warm": {side: {"cpu_ms_per_turn": ms} for side, ms in cpu.items()}}
    (row,) = rows(results)
    assert row["key"] == "warm_cpu"
    assert (row["direct"], row["ccactors"], row["ratio"]) == (4.0, 8.0, 2.0)
    assert row["limit"] == {"what": "bare proxy", "value": 6.0, "allows_target": None}
    assert row["met"] is None
    line = table([row]).splitlines()[2]
    assert line.startswith("warm turn, CPU per turn (SDK / server)")
    assert line.rstrip().endswith("6.00 ms (bare proxy)")


@pytest.mark.parametrize(("bare_proxy", "verdict"), [(1.08, "NO"), (1.14, "NO, past the limit")])
def test_a_target_beyond_the_bare_proxy_is_past_the_limit(bare_proxy: float, verdict: str) -> None:
    """A warm turn over its target is only "past the limit" when the bare proxy, measured
    in the same run, is over it too."""
    results = {
        "warm": {
            "direct": {"ttft_ms": {"p50": 30.0}},
            "ccactors": {"ttft_ms": {"p50": 36.0}},
            "limit": {"ttft_ms": bare_proxy},
        }
    }
    (row,) = rows(results)
    assert row["key"] == "warm_ttft" and row["met"] is False
    line = table([row]).splitlines()[2]
    limit, met = line.split("(bare proxy)")
    assert limit.endswith(f"{bare_proxy:.2f}x ") and met.strip() == verdict


def test_a_comparison_is_the_median_of_each_runs_ratios() -> None:
    """Two versions served side by side: each run gives its own ratios (the hour
    touches both versions alike within a run), and the summary is their median; a run
    that lacks a figure (every turn failed) is left out of that ratio."""
    runs = [
        {"this": {"ttft": 30.0, "turn": 40.0}, "rev": {"ttft": 33.0, "turn": 40.0},
         "bare_proxy": {"ttft": 30.0, "turn": 36.0}},
        {"this": {"ttft": 40.0, "turn": 50.0}, "rev": {"ttft": 40.0, "turn": 50.0},
         "bare_proxy": {"ttft": 40.0, "turn": 50.0}},
        {"this": {"ttft": 20.0, "turn": None}, "rev": {"ttft": 25.0, "turn": 30.0},
         "bare_proxy": {"ttft": 20.0, "turn": 30.0}},
    ]  # fmt: skip
    medians = summary(runs)
    assert medians["ttft this / rev"] == round(30 / 33, 3)  # of 30/33, 1.0 and 0.8
    assert medians["ttft rev / bare_proxy"] == 1.1  # of 1.1, 1.0 and 1.25
    assert medians["turn this / rev"] == 1.0  # the third run has no whole-turn figure
    assert medians["turn this / bare_proxy"] == round((40 / 36 + 1.0) / 2, 3)
