"""The benchmark's table: a memory figure that did not show is not a target met."""

from __future__ import annotations

import pytest

from benchmarks.load import kib_per_more_session
from benchmarks.report import rows


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
    """The timed load and the first untimed one (one-time growth) are left out; the
    later loads' growth is shared by all their sessions; with one untimed load, it
    alone counts."""
    kib = 1024
    # before, after the timed load, then after each of three untimed loads of 16
    rss = [0, 200 * 16 * kib, 230 * 16 * kib, 260 * 16 * kib, 250 * 16 * kib]
    assert kib_per_more_session(rss, 16) == 10.0  # (250 - 230) / 2 loads
    assert kib_per_more_session(rss[:3], 16) == 30.0
    assert kib_per_more_session([0, 16 * kib, 8 * kib], 16) == -0.5
