"""Supervisor: the registry of session actors, the nursery they run in, and their limits."""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from ._actor import ActorState, ActorTimeouts, Envelope, SessionActor
from ._client import ClientFactory, SessionSpec
from ._types import (
    CapacityError,
    MailboxFullError,
    SessionEvent,
    SessionKey,
    SessionStartError,
    SupervisorClosedError,
    Turn,
)

log = logging.getLogger(__name__)

# Retry-After for a full house where no session is idle: a turn usually ends within this.
BUSY_RETRY_AFTER_S = 5


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Limits and places for a supervisor. Times are in seconds.

    Args:
        workspace_root: each session gets its own working directory below this.
        max_sessions: live sessions at most; one more is refused with ``CapacityError``.
        session_idle_ttl_s: a session with no turn for this long is closed.
        mailbox_size: turns that may wait behind a session's running turn; one more is
            refused with ``MailboxFullError``.
        event_buffer_size: events buffered for a slow caller before the actor waits.
        interrupt_drain_timeout_s: how long an interrupted turn may take to end before the
            session's CLI is considered wedged and closed.
    """

    workspace_root: Path
    max_sessions: int = 32
    session_idle_ttl_s: float = 900.0
    mailbox_size: int = 4
    event_buffer_size: int = 256
    interrupt_drain_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A snapshot of one session, for listings. Wall-clock times in seconds since the epoch."""

    session_id: str
    state: ActorState
    cli_pid: int | None
    claude_session_id: str | None
    turns: int
    created_at: float
    last_active_at: float
    mailbox_depth: int
    one_turn: bool


def workspace_name(key: SessionKey) -> str:
    """A directory name for a session's workspace that no session id can steer.

    Derived by hashing (principal, session id): never the raw id. Not a checkpoint.
    """
    digest = hashlib.sha256(f"{key.principal}\0{key.session_id}".encode()).hexdigest()
    return f"s-{digest[:32]}"


class _Start:
    """A session whose actor is being started; callers for that session wait on it."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BaseException | None = None


class Supervisor:
    """Owns the session actors: starts them, finds them, limits them, stops them.

    Create one with ``open_supervisor``. Every session is one ``SessionActor`` task in
    the supervisor's nursery. Turns reach an actor only through its bounded mailbox;
    there is no lock shared between sessions.

    Policy:

    * Start: an actor is started with ``nursery.start`` and registered only once its CLI
      is connected. Concurrent first turns for one session share one start.
    * Capacity: at most ``max_sessions`` actors (starting or live). A new session beyond
      that is refused with ``CapacityError`` (nothing is evicted).
    * Idle expiry: an actor with no turn for ``session_idle_ttl_s`` closes its CLI and
      is forgotten; its next turn starts a new conversation.
    * Failure: an actor whose CLI fails or dies fails its running turn
      (``TurnFailed(reason="cli_error")``) and the turns waiting behind it
      (``session_closed``, counted as dead letters), then is forgotten. A failed turn is
      never re-run (at most once).
    * Shutdown: leaving ``open_supervisor`` cancels every actor; each fails its running
      turn with ``session_closed`` and closes its CLI process before the block exits.
    """

    def __init__(
        self, config: SupervisorConfig, client_factory: ClientFactory, nursery: trio.Nursery
    ) -> None:
        self.config = config
        self.dead_letters = 0
        self._client_factory = client_factory
        self._nursery = nursery
        self._actors: dict[SessionKey, SessionActor] = {}
        self._starting: dict[SessionKey, _Start] = {}
        self._closed = False
        self._timeouts = ActorTimeouts(
            idle_ttl_s=config.session_idle_ttl_s,
            interrupt_drain_s=config.interrupt_drain_timeout_s,
        )

    # -- Turns ------------------------------------------------------------------------

    @asynccontextmanager
    async def open_turn(
        self, key: SessionKey | None, turn: Turn
    ) -> AsyncIterator[trio.MemoryReceiveChannel[SessionEvent]]:
        """Queue a turn for a session and yield the channel its events arrive on.

        The events are ``TurnStarted``, deltas and tool events, then exactly one
        ``TurnCompleted`` or ``TurnFailed``; then the channel ends. With ``key=None`` the
        turn runs on a new one-turn session that is closed afterwards.

        Args:
            key: the session, or ``None`` for a one-turn session.
            turn: the new user message.

        Raises:
            CapacityError: the session is new and ``max_sessions`` are live.
            MailboxFullError: ``mailbox_size`` turns already wait for this session.
            SessionStartError: the session's CLI could not be started.
            SupervisorClosedError: the supervisor is shutting down.

        Leaving the block before the turn ends (including by cancellation, e.g. the HTTP
        client went away) cancels the turn: if it has not started it is skipped, if it
        is running the CLI is interrupted and the turn drained, so the session is ready
        for its next turn.
        """
        send, receive = trio.open_memory_channel[SessionEvent](self.config.event_buffer_size)
        envelope = Envelope(turn, send)
        try:
            await self._submit(key, envelope)
            with receive:
                yield receive
        finally:
            envelope.cancel_scope.cancel()
            send.close()
            receive.close()

    async def _submit(self, key: SessionKey | None, envelope: Envelope) -> None:
        if key is None:
            key = SessionKey(f"one-turn-{uuid.uuid4().hex}")
            await self._start_actor(key, one_turn=True)
            # Its mailbox is empty and nothing else knows the key, so this cannot block.
            self._actors[key].submit_nowait(envelope)
            return
        while True:
            if self._closed:
                raise SupervisorClosedError("the server is shutting down")
            actor = self._actors.get(key)
            if actor is None:
                await self._start_actor(key)
                continue
            try:
                actor.submit_nowait(envelope)
                return
            except trio.WouldBlock:
                raise MailboxFullError(
                    f"session {key.session_id} already has {self.config.mailbox_size} turns "
                    "waiting",
                    retry_after_s=1,
                ) from None
            except trio.BrokenResourceError:
                # Retired between lookup and send cannot happen (no checkpoint between
                # them); retired earlier means it is being forgotten: start another.
                self._actors.pop(key, None)

    async def _start_actor(self, key: SessionKey, *, one_turn: bool = False) -> None:
        """Start the actor for ``key``, or wait for its start already under way.

        Raises:
            CapacityError, SupervisorClosedError: as for ``open_turn``.
            SessionStartError: the actor's client could not be connected.
        """
        start = self._starting.get(key)
        if start is None:
            self._check_capacity()
            start = self._starting[key] = _Start()
            self._nursery.start_soon(self._spawn, key, start, one_turn)
        await start.done.wait()
        if start.error is not None:
            raise SessionStartError(f"could not start Claude Code: {start.error}") from (
                start.error
            )

    def _check_capacity(self) -> None:
        if self._closed:
            raise SupervisorClosedError("the server is shutting down")
        if len(self._actors) + len(self._starting) < self.config.max_sessions:
            return
        waits = [
            seconds
            for actor in self._actors.values()
            if (seconds := actor.seconds_until_idle_expiry()) is not None
        ]
        raise CapacityError(
            f"all {self.config.max_sessions} sessions are in use",
            retry_after_s=min(waits, default=BUSY_RETRY_AFTER_S),
        )

    async def _spawn(self, key: SessionKey, start: _Start, one_turn: bool) -> None:
        """Start an actor in the nursery and register it once its client is connected."""
        cwd = self.config.workspace_root / workspace_name(key)
        try:
            _make_directory(cwd)
            actor = SessionActor(
                key,
                SessionSpec(cwd=cwd),
                client_factory=self._client_factory,
                timeouts=self._timeouts,
                mailbox_size=self.config.mailbox_size,
                one_turn=one_turn,
                on_retire=self._forget,
            )
            await self._nursery.start(self._supervise, actor)
        except Exception as exc:
            log.warning("session %s could not start: %r", key.session_id, exc)
            start.error = exc
        else:
            self._actors[key] = actor
        finally:
            del self._starting[key]
            start.done.set()

    async def _supervise(
        self, actor: SessionActor, *, task_status: trio.TaskStatus[SessionActor]
    ) -> None:
        """Run one actor; a failure after start is logged and the actor forgotten."""
        try:
            await actor.run(task_status=task_status)
        except Exception:
            if not actor.started:
                raise  # nursery.start re-raises it in _spawn
            log.exception("session %s failed", actor.key.session_id)
        finally:
            self.dead_letters += actor.dead_letters
            if actor.one_turn:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(
                        shutil.rmtree, actor.spec.cwd, True, abandon_on_cancel=False
                    )

    def _forget(self, actor: SessionActor) -> None:
        """Remove a retiring actor from the registry (only if it is still the one there)."""
        if self._actors.get(actor.key) is actor:
            del self._actors[actor.key]

    # -- Listings ---------------------------------------------------------------------

    def sessions(self) -> list[SessionInfo]:
        """Snapshots of every registered session, oldest first. Not a checkpoint."""
        return sorted((_info(actor) for actor in self._actors.values()), key=lambda i: i.created_at)

    def session(self, key: SessionKey) -> SessionInfo | None:
        """A snapshot of one session, or ``None`` if it is not live. Not a checkpoint."""
        actor = self._actors.get(key)
        return None if actor is None else _info(actor)

    def close(self) -> None:
        """Refuse new turns from now on. Not a checkpoint; running turns go on."""
        self._closed = True


def _make_directory(path: Path) -> None:
    # One mkdir on a local disk: cheaper than a thread hop, and it keeps the spawn path
    # free of threads (which would make virtual-clock tests inexact).
    path.mkdir(parents=True, exist_ok=True)


def _info(actor: SessionActor) -> SessionInfo:
    return SessionInfo(
        session_id=actor.key.session_id,
        state=actor.state,
        cli_pid=actor.cli_pid,
        claude_session_id=actor.claude_session_id,
        turns=actor.turns,
        created_at=actor.created_at,
        last_active_at=actor.last_active_at,
        mailbox_depth=actor.mailbox_depth,
        one_turn=actor.one_turn,
    )


@asynccontextmanager
async def open_supervisor(
    config: SupervisorConfig, client_factory: ClientFactory
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the duration of the block.

    Args:
        config: limits and the workspace root.
        client_factory: opens a connected ``ClaudeClient`` per session (``actors.open_sdk_client``
            with settings for the real CLI; ``actors.testing.ScriptedClientFactory`` in tests).

    Leaving the block (normally, by an exception, or by cancellation) stops every actor:
    running turns fail with ``session_closed`` and every CLI process is closed before the
    block exits.
    """
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(config, client_factory, nursery)
        try:
            yield supervisor
        finally:
            supervisor.close()
            nursery.cancel_scope.cancel()
