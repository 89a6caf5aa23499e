"""What a supervisor is configured with, and what it reports of each session."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._policy import ActorPolicy

if TYPE_CHECKING:
    from ._actor import ActorState, SessionActor


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Limits and places for a supervisor. Times are in seconds.

    Args:
        workspace_root: each session gets its own working directory below this.
        max_sessions: sessions (live or hibernated) at most; a new one beyond is refused.
        max_live_sessions: CLI processes at most (sessions' and warm ones).
        live_slot_wait_s: how long a session that needs a CLI process waits for a live
            slot (while none is free and no live session is idle) before
            ``CapacityError``.
        max_live_sessions_per_principal: live CLI processes one principal's sessions may
            hold at once (its share of ``max_live_sessions``); ``None``: no share, any
            principal may use every slot. Applies to every principal, ``""`` included:
            an embedder whose sessions all have principal ``""`` leaves it ``None``.
        warm_pool_size: idle actors kept connected, ready to be adopted by new sessions.
        max_concurrent_starts: CLI processes starting (spawn and handshake) at once; more
            wait their turn. ``None``: ``STARTS_PER_CPU`` (8) per CPU.
        mailbox_size: turns that may wait behind a session's running turn.
        max_turns_per_principal: turns one principal (API key) may have under way (queued
            or running) at once; one more is refused with ``PrincipalLimitError``.
        max_sessions_per_principal: sessions (live or hibernated) one principal may hold.
        event_buffer_size: events buffered for a slow caller before the actor waits.
        fanout_buffer_size: events buffered per extra listener before it lags.
        policy: what each actor enforces (TTLs, timeouts, restart intensity).
    """

    workspace_root: Path
    max_sessions: int = 1000
    max_live_sessions: int = 32
    live_slot_wait_s: float = 10.0
    max_live_sessions_per_principal: int | None = None
    warm_pool_size: int = 0
    max_concurrent_starts: int | None = None
    mailbox_size: int = 4
    max_turns_per_principal: int = 1000
    max_sessions_per_principal: int = 1000
    event_buffer_size: int = 256
    fanout_buffer_size: int = 256
    policy: ActorPolicy = field(default_factory=ActorPolicy)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A snapshot of one session, for listings. Wall-clock times in seconds since the epoch."""

    session_id: str
    principal: str
    state: ActorState
    live: bool
    cli_pid: int | None
    claude_session_id: str | None
    turns: int
    restarts: int
    last_error: str | None
    created_at: float
    last_active_at: float
    mailbox_depth: int
    listeners: int
    one_turn: bool
    model: str | None = None  # the model the session runs, as named to its CLI


def session_info(actor: SessionActor) -> SessionInfo:
    """A snapshot of ``actor``'s session. Not a checkpoint."""
    return SessionInfo(
        session_id=actor.key.session_id if actor.key else "",
        principal=actor.key.principal if actor.key else "",
        state=actor.state,
        live=actor.live,
        cli_pid=actor.cli_pid,
        claude_session_id=actor.claude_session_id,
        turns=actor.turns,
        restarts=actor.restarts,
        last_error=actor.last_error,
        created_at=actor.created_at,
        last_active_at=actor.last_active_at,
        mailbox_depth=actor.mailbox_depth,
        listeners=len(actor.fanout),
        one_turn=actor.one_turn,
        model=actor.model,
    )
