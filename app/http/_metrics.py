"""Prometheus metrics (``GET /metrics``), with prometheus-client.

Turn metrics are recorded as turns end (the supervisor's ``Observer`` hook); session and
process gauges and the restart and timeout counters are read from the supervisor's
stats at scrape time, so they are never out of date.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from actors import Observer, Supervisor, TurnCompleted, TurnRecord

# Seconds; from a warm turn's tens of milliseconds to a long agentic turn.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics(Observer):
    """The service's metrics in their own registry (so several servers can share a
    process). Attach with ``supervisor.add_observer(metrics)``."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter(
            "ccactors_turns",
            "Turns by outcome (completed, or the failure reason).",
            ["outcome"],
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "ccactors_time_to_first_token_seconds",
            "From a turn being queued to its first text or thinking delta.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.turn_duration = Histogram(
            "ccactors_turn_duration_seconds",
            "From a turn being queued to its final event.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cli_spawns = Counter(
            "ccactors_cli_spawns", "Claude Code CLI processes started.", registry=self.registry
        )
        self.tokens = Counter(
            "ccactors_tokens",
            "Tokens of completed turns by model and kind (input, output, cache_read, "
            "cache_creation).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.cost = Counter(
            "ccactors_cost_usd",
            "Cost of completed turns as estimated by Claude Code, by model.",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_SupervisorCollector(supervisor))

    def turn_ended(self, record: TurnRecord) -> None:
        outcome = record.outcome
        if isinstance(outcome, TurnCompleted):
            self.turns.labels("completed").inc()
            model = outcome.model or "unknown"
            usage = outcome.usage
            for kind, count in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_read", usage.cache_read_input_tokens),
                ("cache_creation", usage.cache_creation_input_tokens),
            ):
                self.tokens.labels(model, kind).inc(count)
            self.cost.labels(model).inc(outcome.total_cost_usd or 0.0)
        else:
            self.turns.labels(outcome.reason).inc()
        if record.first_output_at is not None:
            self.time_to_first_token.observe(record.first_output_at - record.queued_at)
        self.turn_duration.observe(record.ended_at - record.queued_at)

    def cli_started(self, session_id: str | None, pid: int | None) -> None:
        self.cli_spawns.inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class _SupervisorCollector(Collector):
    """Gauges and counters read from ``Supervisor.stats()`` at each scrape."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._supervisor.stats()
        sessions = GaugeMetricFamily(
            "ccactors_sessions", "Sessions by whether a CLI runs for them.", labels=["state"]
        )
        sessions.add_metric(["live"], stats["live_sessions"])
        sessions.add_metric(["hibernated"], stats["hibernated_sessions"])
        yield sessions
        yield GaugeMetricFamily(
            "ccactors_busy_sessions", "Sessions running a turn.", value=stats["busy_sessions"]
        )
        yield GaugeMetricFamily(
            "ccactors_warm_pool_size",
            "Connected CLIs waiting for a session.",
            value=stats["warm_pool_size"],
        )
        yield GaugeMetricFamily(
            "ccactors_live_processes",
            "Claude Code CLI processes running.",
            value=stats["live_processes"],
        )
        yield CounterMetricFamily(
            "ccactors_restarts", "CLI restarts (one-for-one).", value=stats["restarts"]
        )
        yield CounterMetricFamily(
            "ccactors_forks",
            "Sessions started as forks of a conversation (an edited or regenerated turn).",
            value=stats["forks"],
        )
        yield CounterMetricFamily(
            "ccactors_dead_letters",
            "Turns failed unrun because their session closed.",
            value=stats["dead_letters"],
        )
        timeouts = CounterMetricFamily(
            "ccactors_timeouts", "Turn timeouts by kind.", labels=["kind"]
        )
        for kind, count in stats["timeouts"].items():
            timeouts.add_metric([kind], count)
        yield timeouts
