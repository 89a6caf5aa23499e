"""The dashboard's overview figures: capacity, load, latency and failures at a glance.

Counts come from ``Supervisor.stats()``; first-token latency from the same Prometheus
histogram ``GET /metrics`` exposes (``ccactors_time_to_first_token_seconds``), estimated
the way Prometheus' ``histogram_quantile`` does; turns per minute from a sliding window
of turn ends.
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Sequence
from typing import Any

import trio
from prometheus_client import Histogram

from actors import Observer, Supervisor, TurnRecord

from .._settings import Settings
from ..cluster._node import Node

RATE_WINDOW_S = 60.0


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of a histogram's observations, estimated from its buckets.

    The estimate of Prometheus' ``histogram_quantile`` (PromQL documentation, "Functions";
    ``bucketQuantile`` in ``promql/quantile.go``): find the bucket holding the observation
    of rank ``q * count`` and interpolate linearly within it, assuming its observations
    spread evenly between the previous bucket's upper bound (0 for the first bucket) and
    its own. A rank in the ``+Inf`` bucket gives the highest finite upper bound.

    Args:
        q: the quantile, 0 to 1 (``0.95`` for p95).
        buckets: ``(upper bound, cumulative count)`` pairs, in any order, the last (by
            bound) being ``+Inf`` with the count of every observation, as Prometheus'
            ``le`` buckets are.

    Returns:
        The estimate (in the buckets' unit), or ``None`` if there are no observations or
        the buckets cannot give one (fewer than two, or no ``+Inf`` bucket).

    Raises:
        ValueError: ``q`` is not within 0 and 1.

    Not a checkpoint.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    ordered = sorted(buckets)
    if len(ordered) < 2 or ordered[-1][0] != math.inf:
        return None
    bounds = [bound for bound, _ in ordered]
    # Counts scraped apart may dip by rounding; Prometheus forces them monotonic too.
    counts = list(_monotonic(count for _, count in ordered))
    observations = counts[-1]
    if observations == 0:
        return None
    rank = q * observations
    b = min(bisect.bisect_left(counts, rank), len(counts) - 1)
    if b == len(ordered) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end = (0.0, bounds[0]) if b == 0 else (bounds[b - 1], bounds[b])
    below = counts[b - 1] if b > 0 else 0.0
    within = counts[b] - below
    if within == 0:  # only for rank 0 (q = 0) on an empty first bucket
        return start
    return start + (end - start) * (rank - below) / within


def _monotonic(counts: Any) -> Any:
    highest = 0.0
    for count in counts:
        highest = max(highest, count)
        yield highest


def histogram_buckets(histogram: Histogram) -> list[tuple[float, float]]:
    """A prometheus-client histogram's ``(upper bound, cumulative count)`` buckets, as
    ``/metrics`` exposes them (``le`` labels). Not a checkpoint."""
    return [
        (float(sample.labels["le"]), sample.value)
        for family in histogram.collect()
        for sample in family.samples
        if sample.name.endswith("_bucket")
    ]


class TurnRate(Observer):
    """Counts turns ending in the last ``RATE_WINDOW_S`` seconds (of ``trio.current_time``).

    Attach with ``supervisor.add_observer(rate)``. Keeps one timestamp per turn in the
    window, pruned as turns end and as it is read.
    """

    def __init__(self) -> None:
        self._ended: collections.deque[float] = collections.deque()

    def turn_ended(self, record: TurnRecord) -> None:
        self._ended.append(record.ended_at)
        self._prune(record.ended_at)

    def per_minute(self) -> int:
        """Turns that ended in the last minute. Not a checkpoint."""
        self._prune(trio.current_time())
        return len(self._ended)

    def _prune(self, now: float) -> None:
        while self._ended and self._ended[0] <= now - RATE_WINDOW_S:
            self._ended.popleft()


def overview(
    supervisor: Supervisor,
    settings: Settings,
    first_token: Histogram,
    rate: TurnRate,
    node: Node | None = None,
) -> dict[str, Any]:
    """The overview figures as JSON, for ``GET /v1/dashboard/overview``.

    Keys: ``live_processes`` of ``max_live_sessions`` (CLIs running, warm ones included),
    ``warm_pool_size`` of ``warm_pool_target``; ``sessions``, ``live_sessions``,
    ``hibernated_sessions``, ``busy_sessions``, ``waiting_turns``; ``turns_per_minute``
    (turns ended in the last 60 s); ``first_token_latency_s`` (``p50``, ``p95`` in
    seconds, ``null`` before any observation, and ``observations``: since the server
    started, from the histogram ``/metrics`` exposes); ``restarts``, ``dead_letters``,
    ``timeouts`` (by kind); ``forks``. In a cluster (``node``), ``node`` (this node's
    id) and ``nodes`` (every node: ``node``, ``last_seen_s``, ``sessions`` it holds,
    ``this``; ``Node.peers``), else ``null`` for both. Not a checkpoint.
    """
    stats = supervisor.stats()
    buckets = histogram_buckets(first_token)
    return {
        "node": None if node is None else node.id,
        "nodes": None if node is None else node.peers(),
        "live_processes": stats["live_processes"],
        "max_live_sessions": settings.max_live_sessions,
        "warm_pool_size": stats["warm_pool_size"],
        "warm_pool_target": settings.warm_pool_size,
        "sessions": stats["sessions"],
        "live_sessions": stats["live_sessions"],
        "hibernated_sessions": stats["hibernated_sessions"],
        "busy_sessions": stats["busy_sessions"],
        "waiting_turns": stats["waiting_turns"],
        "turns_per_minute": rate.per_minute(),
        "first_token_latency_s": {
            "p50": histogram_quantile(0.5, buckets),
            "p95": histogram_quantile(0.95, buckets),
            "observations": int(max((count for _, count in buckets), default=0)),
        },
        "restarts": stats["restarts"],
        "dead_letters": stats["dead_letters"],
        "timeouts": stats["timeouts"],
        "forks": stats.get("forks"),
    }
