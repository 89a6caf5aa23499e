"""How much each scenario does (a full run, or ``--quick`` for CI), and the context every
scenario runs in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .direct import Direct
from .measure import Quiet

# Every scenario's name, in the order a full run takes them (the load last: it leaves
# the machine's load average high for a minute).
SCENARIOS = ("warm", "relay", "new", "resume", "hol", "load")


@dataclass(frozen=True)
class Plan:
    """Counts and server settings for one run.

    Args:
        warm_turns: timed warm turns (after one untimed) per contender.
        relay_turns: timed ``[[chunks=relay_chunks]]`` turns per contender.
        new_sessions: new sessions per contender and kind; also the sessions resumed.
        hol_turns: turns of session B, alone and while A streams.
        hol_chunks, hol_chunk_delay_s: A's slow stream (``[[chunks]]``, ``[[chunk_delay]]``).
        sessions, turns: the concurrent load, N sessions x M turns.
        live: ``max_live_sessions`` of the load server (default: ``sessions``).
        pool: ``warm_pool_size`` of the servers that have a pool.
        memory_loads: untimed loads alike after the timed one, for the memory a
            hibernated session costs once the server's one-time growth is behind it.
        idle_ttl_s: ``session_idle_ttl_s`` of the servers (sessions hibernate between
            scenarios; each scenario warms its session up first).
    """

    warm_turns: int = 60
    relay_turns: int = 8
    relay_chunks: int = 2000
    new_sessions: int = 8
    hol_turns: int = 20
    hol_chunks: int = 200
    hol_chunk_delay_s: float = 0.01
    sessions: int = 16
    turns: int = 10
    live: int | None = None
    pool: int = 2
    memory_loads: int = 8
    idle_ttl_s: float = 3.0

    @classmethod
    def quick(cls) -> Plan:
        """A smoke run: every scenario, tiny counts, few CLI processes."""
        return cls(
            warm_turns=3,
            relay_turns=1,
            relay_chunks=500,
            new_sessions=1,
            hol_turns=2,
            hol_chunks=40,
            hol_chunk_delay_s=0.02,
            sessions=2,
            turns=2,
            pool=1,
            memory_loads=1,
            idle_ttl_s=2.0,
        )

    @property
    def max_live(self) -> int:
        return self.live or self.sessions


@dataclass
class Bench:
    """What every scenario gets: the plan, the quiet-machine wait, the offline
    upstream's URL, the direct SDK's options, and a directory for state."""

    plan: Plan
    quiet: Quiet
    upstream_url: str
    direct: Direct
    root: Path
    servers: int = 0

    def state_dir(self, name: str) -> Path:
        """A fresh state directory for the next server."""
        self.servers += 1
        return self.root / f"server-{self.servers}-{name}"
