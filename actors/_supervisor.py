"""Supervisor: the registry of session actors, the nursery they run in, and their limits."""

from __future__ import annotations

import collections
import contextvars
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import trio

from ._actor import SessionActor
from ._client import ClientFactory, limit_starts
from ._config import SessionInfo, SupervisorConfig, session_info
from ._fanout import Notice
from ._pool import WarmPool
from ._retention import RetentionTimer
from ._slots import BUSY_RETRY_AFTER_S, LiveSlots
from ._turn import Envelope
from ._types import (
    CapacityError,
    ForkPoint,
    MailboxFullError,
    Observer,
    PrincipalLimitError,
    RetryLaterError,
    SessionEvent,
    SessionKey,
    SessionNotFoundError,
    SessionRecord,
    SessionStartError,
    SupervisorClosedError,
    Turn,
    TurnRecord,
)
from ._workspaces import make_workspace, remove_workspace, set_system_prompt, workspace_name

log = logging.getLogger(__name__)

# CLIs starting at once per CPU when ``max_concurrent_starts`` is unset. A session's first
# turn waits for its CLI, so with N sessions opened together the slowest first turn comes
# when the last start ends. Measured on 2 CPUs (TTFT p99 as a ratio to the SDK alone
# starting every CLI at once; docs/reference/benchmarks.md): 16 sessions, 1 per CPU
# 1.48-1.69x, 2 per CPU 1.12-1.19x, 4 per CPU 1.15-1.58x, 8 per CPU (all at once)
# 0.89-1.16x; 32 sessions, 1 per CPU 1.50x, 4 per CPU 1.32x, 8 per CPU 1.09-1.45x, all
# 32 at once 0.82x; no turn failed. Started in waves, the later waves compete with the
# turns of the sessions already up.
STARTS_PER_CPU = 8


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

    Policy (after Erlang/OTP):

    * One-for-one: each session's CLI is supervised on its own. If it exits, crashes,
      is wedged (no first message within ``first_chunk_timeout_s``: it is killed) or
      does not end an interrupted turn in time, the running turn fails
      (``TurnFailed`` with reason ``cli_error`` or ``timeout``) and is never re-run (at
      most once); a turn whose prompt never reached the CLI runs on the new one. The
      session's actor immediately starts a new CLI that resumes the conversation
      (``resume=<claude session id>``).
    * Restart intensity: more than ``max_restarts`` restarts of one session within
      ``restart_window_s`` close that session; its waiting turns fail with the reason,
      and it is forgotten (its next turn starts a new conversation).
    * Start: an actor is registered only once its CLI is connected (``nursery.start``),
      or at once when it adopts a warm-pool actor. Concurrent first turns share a start.
      A session started as a fork (``open_turn(..., fork=...)``) never adopts a warm
      actor: its CLI must start resuming the conversation it branches off.
    * Hibernation: a session idle for ``idle_ttl_s`` closes its CLI but keeps its
      Claude session id and workspace; its next turn resumes it. With no turn queued
      its actor's task ends (``SessionActor.dormant``): the session is the actor object
      alone until its next turn runs the actor again. After ``retention_s`` without a
      turn it is forgotten (one timer for all of them: ``RetentionTimer``).
    * Capacity: at most ``max_live_sessions`` CLI processes. Needing one when all are
      taken hibernates the least recently used idle session (warm-pool actors go
      first); if none is idle, the session waits up to ``live_slot_wait_s`` for one to
      become free or idle, then is refused (``CapacityError``, HTTP 503). A waiter looks
      again on every change and never depends on an idle TTL (the rule in full:
      ``LiveSlots``). The warm pool is not refilled while a session waits. At most
      ``max_sessions`` sessions in all, live or hibernated.
    * Tenants: a principal (API key) holds at most ``max_live_sessions_per_principal``
      live CLIs. One that holds its share and needs another (a new session, adopting a
      warm actor, or waking a hibernated one) hibernates its *own* least recently used
      idle session; if none of its sessions is idle it is refused
      (``PrincipalLimitError``, HTTP 429), while other principals are still served.
      Warm-pool actors belong to no principal until adopted.
    * Models and system prompts: a turn naming a model its session's CLI does not run
      switches that CLI first (``set_model``, no restart; a resumed CLI is switched to
      the session's model), and the session stays on it. A warm actor is adopted
      whatever the model; a new session whose opening turn adds to the system prompt
      (``Turn.system``) is not: its own CLI starts, reading the text from a file in its
      workspace. Later turns' ``system`` changes nothing.
    * Warm pool: a warm actor's CLI is switched, before it is offered, to the model the
      latest adopting session asked for, and (``policy.warm_up``) computes its context
      once (``SessionActor._warm_up``): both are a fresh CLI's first-turn costs. The
      CLI that replaces an adopted one starts when the adopting session's first turn
      is over, or ``REFILL_HOLD_OFF_S`` after the adoption (``WarmPool``).
    * Start-ups: at most ``max_concurrent_starts`` CLIs start at once (``limit_starts``;
      unset, ``STARTS_PER_CPU`` per CPU); the others wait their turn, holding their live
      slot.
    * Ownership (a cluster of nodes): with an ``ownership`` (``SessionOwnership``),
      every turn of a session first claims it (``claim``: at once if this node drives
      it already, else possibly after another node hands it over); a session this node
      must give up is handed off (``hand_off``): its running and queued turns finish,
      its CLI is closed and its actor unregistered, but it is not forgotten (its record
      and workspace stay for whichever node resumes it next).
    * Shutdown: ``close()`` refuses new turns; ``wait_idle()`` waits for running ones;
      leaving ``open_supervisor`` cancels every actor, failing running turns with
      ``session_closed`` and closing every CLI process before it returns.
    """

    def __init__(
        self,
        config: SupervisorConfig,
        client_factory: ClientFactory,
        nursery: trio.Nursery,
        directory: SessionDirectory | None = None,
        ownership: SessionOwnership | None = None,
    ) -> None:
        self.config = config
        self._directory = directory
        self._ownership = ownership
        self.dead_letters = 0
        self.sessions_failed = 0
        self.forks = 0  # sessions started as forks
        starts = config.max_concurrent_starts or STARTS_PER_CPU * (os.cpu_count() or 1)
        self._client_factory = limit_starts(client_factory, trio.CapacityLimiter(starts))
        self._nursery = nursery
        # The context of the task that opened the supervisor: an actor is started in a
        # copy of it, not of the caller's (a request's), whose variables (the request,
        # its id in log lines) would otherwise live as long as the session.
        self._context = contextvars.copy_context()
        self._sessions: dict[SessionKey, SessionActor] = {}
        self._starting: dict[SessionKey, _Start] = {}
        self._slots = LiveSlots(
            config.max_live_sessions,
            wait_s=config.live_slot_wait_s,
            share=config.max_live_sessions_per_principal,
            on_change=self._slots_changed,
        )
        self._pool = WarmPool(config.warm_pool_size, self._slots, self._start_warm_actor)
        self._changed = trio.lowlevel.ParkingLot()  # a session went idle or retired
        self._totals: collections.Counter[str] = collections.Counter()  # of gone actors
        self._observers = _Observers()
        self._turns_by_principal: collections.Counter[str] = collections.Counter()
        self._closed = False
        self._session_waiters: dict[SessionKey, trio.lowlevel.ParkingLot] = {}
        # Forgets dormant sessions at their retention: one task for all of them.
        self._retention = RetentionTimer(
            self._expire, self._registered, lambda: len(self._sessions)
        )

    # -- Turns ------------------------------------------------------------------------

    @asynccontextmanager
    async def open_turn(
        self,
        key: SessionKey | None,
        turn: Turn,
        *,
        principal: str = "",
        fork: ForkPoint | None = None,
    ) -> AsyncIterator[trio.MemoryReceiveChannel[SessionEvent]]:
        """Queue a turn for a session and yield the channel its events arrive on.

        The events are ``TurnStarted``, deltas and tool events, then exactly one
        ``TurnCompleted`` or ``TurnFailed``; then the channel ends. With ``key=None`` the
        turn runs on a new one-turn session (owned by ``principal``) that is closed
        afterwards.

        With ``fork``, a session that this turn starts (``key`` not registered, not being
        started) begins as a branch of that conversation: its CLI resumes it up to the
        fork point as a new Claude session, in the new session's own working directory;
        the conversation forked from is untouched. For a session that exists, ``fork``
        is ignored.

        Raises:
            CapacityError: no room for a new session, or no live slot to be had.
            MailboxFullError: ``mailbox_size`` turns already wait for this session.
            PrincipalLimitError: the principal already has ``max_turns_per_principal``
                turns under way, or ``max_sessions_per_principal`` sessions, or holds its
                share of live CLIs with none of its sessions idle.
            SessionStartError: the session's CLI could not be started.
            SupervisorClosedError: the supervisor is shutting down.

        Leaving the block before the turn ends (including by cancellation, e.g. the HTTP
        client went away) cancels the turn: if it has not started it is skipped; if it
        is running the CLI is interrupted and the turn drained, so the session is ready
        for its next turn. With ``policy.finish_on_disconnect`` a started turn runs on.
        """
        owner = principal if key is None else key.principal
        if self._turns_by_principal[owner] >= self.config.max_turns_per_principal:
            raise PrincipalLimitError(
                f"{self.config.max_turns_per_principal} turns of this key are already under way",
                retry_after_s=BUSY_RETRY_AFTER_S,
            )
        send, receive = trio.open_memory_channel[SessionEvent](self.config.event_buffer_size)
        envelope = Envelope(turn, send)
        self._turns_by_principal[owner] += 1
        try:
            await self._submit(
                key or SessionKey(f"one-turn-{uuid.uuid4().hex}", owner),
                envelope,
                one_turn=key is None,
                fork=fork,
            )
            with receive:
                yield receive
        finally:
            self._turns_by_principal[owner] -= 1
            if not (envelope.started and self.config.policy.finish_on_disconnect):
                envelope.cancel_scope.cancel()
            send.close()
            receive.close()

    async def _submit(
        self, key: SessionKey, envelope: Envelope, *, one_turn: bool, fork: ForkPoint | None
    ) -> None:
        if self._ownership is not None and not one_turn and not self._closed:
            await self._ownership.claim(key)
        while True:
            if self._closed:
                raise SupervisorClosedError("the server is shutting down")
            actor = self._sessions.get(key)
            if actor is None:
                await self._start_session(
                    key,
                    one_turn=one_turn,
                    fork=fork,
                    system=envelope.turn.system,
                    model=envelope.turn.model,
                )
                fork = None  # started (as a fork or not): from now on it exists
                continue
            if not actor.live:
                # Hibernated: its key must be within its share of live CLIs (else 429
                # now), and with no free slot it waits (bounded) for room while a
                # refusal can still be a status code.
                self._slots.check_share(key.principal, actor)
                if len(self._slots) >= self.config.max_live_sessions:
                    await self._slots.wait_for_room(actor)
                    if self._sessions.get(key) is not actor:
                        continue  # it retired meanwhile: look again
            if actor.dormant:
                self._revive(actor)
            try:
                actor.submit_nowait(envelope)
                return
            except trio.WouldBlock:
                raise MailboxFullError(
                    f"session {key.session_id} already has {self.config.mailbox_size} "
                    "turns waiting",
                    retry_after_s=1,
                ) from None
            except trio.BrokenResourceError:
                self._sessions.pop(key, None)  # retired: start another

    def rename_session(self, old: SessionKey, new: SessionKey) -> bool:
        """Give session ``old`` the key ``new``: its actor, CLI (live or hibernated),
        conversation, workspace and listeners go with it, and ``old`` is free for a new
        session. Observers see the session's later turns under ``new``; keeping records
        made under ``old`` in step (e.g. a store's) is the caller's.

        Returns:
            Whether it was renamed: ``False`` (nothing changed) while ``old`` is being
            started, has a turn running, in hand or queued, or if ``new`` is taken.

        Raises:
            SessionNotFoundError: ``old`` is not registered (it may still be known to the
                session directory, which the caller renames).
            ValueError: ``new`` has another principal.

        Not a checkpoint.
        """
        if new.principal != old.principal:
            raise ValueError("a session keeps its principal when renamed")
        if old in self._starting or new in self._starting or new in self._sessions:
            return False
        actor = self._actor(old)
        if not actor.unoccupied:
            return False
        del self._sessions[old]
        actor.rekey(new)
        self._sessions[new] = actor
        self._wake_session_waiters(new)
        return True

    def interrupt(self, key: SessionKey) -> bool:
        """Interrupt the session's running turn. Returns whether one was running.

        Raises:
            SessionNotFoundError: no such session.

        Not a checkpoint. The turn's caller gets ``TurnFailed(reason="interrupted")``.
        """
        return self._actor(key).interrupt()

    @contextmanager
    def listen(self, key: SessionKey) -> Iterator[trio.MemoryReceiveChannel[Notice]]:
        """Yield a channel with every event of the session's turns from now on.

        A listener that reads too slowly loses events and then gets ``Lagged(dropped)``;
        it never slows the session. Pending ``PermissionRequest``s come first. The channel
        ends when the session is forgotten.

        Raises:
            SessionNotFoundError: no such session.
        """
        actor = self._actor(key)
        with actor.fanout.listen(replay=actor.pending_permissions()) as events:
            yield events

    async def wait_for_session(self, key: SessionKey) -> None:
        """Wait until session ``key`` exists (is registered), instead of polling for it.

        Returns at once (after a checkpoint) if it exists already. Otherwise returns
        when its actor is registered: started by a turn from any route (a WebSocket, an
        HTTP request, an embedding program) or adopted from the warm pool. On return
        the session exists, and it stays registered until the caller's next checkpoint,
        so a ``listen(key)`` right after this returns cannot raise
        ``SessionNotFoundError``.

        Waiters are woken in the very step that registers the session, and that step
        comes before the session's first turn is handed to its actor: the caller whose
        turn starts a session submits it only once the start is done. An actor reports a
        turn's first event (``TurnStarted``) only after receiving the turn and sending
        its prompt to the CLI, both checkpoints. So a caller that calls ``listen(key)``
        right after this returns, with no checkpoint in between, hears the session's
        first turn from its ``TurnStarted`` on.

        Args:
            key: the session (principal and session id) to wait for.

        After ``close()`` turns no longer start sessions, so a wait for a session that
        does not exist (and is not being started) lasts until cancelled. Takes no
        timeout: wrap it in ``trio.move_on_after``. If cancelled, it leaves nothing
        behind.
        """
        await trio.lowlevel.checkpoint()
        while key not in self._sessions:
            lot = self._session_waiters.setdefault(key, trio.lowlevel.ParkingLot())
            try:
                await lot.park()
            finally:
                if not len(lot) and self._session_waiters.get(key) is lot:
                    del self._session_waiters[key]

    def _wake_session_waiters(self, key: SessionKey) -> None:
        """Wake every ``wait_for_session(key)``: the session was just registered."""
        lot = self._session_waiters.pop(key, None)
        if lot is not None:
            lot.unpark_all()

    async def close_session(self, key: SessionKey) -> SessionInfo:
        """Close a session for good: its running turn fails (``session_closed``), waiting
        turns too, its CLI is closed, its workspace removed, and it is forgotten at once
        (a new turn with the same id starts a new conversation).

        Returns the session's last snapshot (e.g. its ``claude_session_id``).

        Raises:
            SessionNotFoundError: no such session.

        Waits until the CLI process is gone. If cancelled, the closing goes on anyway.
        """
        actor = self._actor(key)
        info = session_info(actor)
        self.close_session_nowait(key)
        await actor.done.wait()
        return info

    async def hand_off(self, key: SessionKey) -> bool:
        """Stop driving session ``key`` here so that another node can: once it has no
        turn running or waiting, its CLI is closed and its actor unregistered. Unlike
        ``close_session`` it is not forgotten: observers are not told, and its workspace
        stays. Returns whether there was such a session.

        Waits for the session's turns to end and its CLI to be gone; the hand-off goes on
        if this is cancelled.
        """
        actor = self._sessions.get(key)
        if actor is None:
            return False
        actor.hand_off()
        if actor.dormant:
            self._end_dormant(actor)
        await actor.done.wait()
        return True

    def close_session_nowait(
        self, key: SessionKey, reason: str = "the session was deleted"
    ) -> None:
        """``close_session`` without waiting for the CLI to be gone. Not a checkpoint.

        Raises:
            SessionNotFoundError: no such session.
        """
        actor = self._actor(key)
        actor.close(reason)
        if actor.dormant:
            self._end_dormant(actor)
        self._forget(actor)

    def answer_permission(
        self, key: SessionKey, request_id: str, allow: bool, message: str = ""
    ) -> bool:
        """Answer a session's pending ``PermissionRequest``; False if there is no such
        pending request. Not a checkpoint.

        Raises:
            SessionNotFoundError: no such session.
        """
        return self._actor(key).answer_permission(request_id, allow, message)

    def _actor(self, key: SessionKey) -> SessionActor:
        actor = self._sessions.get(key)
        if actor is None:
            raise SessionNotFoundError(f"no session {key.session_id!r}")
        return actor

    # -- Starting sessions ------------------------------------------------------------

    async def _start_session(
        self,
        key: SessionKey,
        *,
        one_turn: bool,
        fork: ForkPoint | None = None,
        system: str | None = None,
        model: str | None = None,
    ) -> None:
        """Start the actor for ``key`` (adopting a warm one if any), or wait for the
        start already under way. ``system`` and ``model`` are the opening turn's
        ``Turn.system`` and ``Turn.model``.

        Raises:
            CapacityError, PrincipalLimitError, SupervisorClosedError: as for
                ``open_turn``.
            SessionStartError: the actor's client could not be connected.
        """
        start = self._starting.get(key)
        if start is None:
            if len(self._sessions) + len(self._starting) >= self.config.max_sessions:
                raise CapacityError(
                    f"all {self.config.max_sessions} sessions are in use",
                    retry_after_s=BUSY_RETRY_AFTER_S,
                )
            owned = sum(k.principal == key.principal for k in (*self._sessions, *self._starting))
            if owned >= self.config.max_sessions_per_principal:
                raise PrincipalLimitError(
                    f"this key already has {owned} sessions (at most "
                    f"{self.config.max_sessions_per_principal}); delete one or wait for one "
                    "to be forgotten",
                    retry_after_s=BUSY_RETRY_AFTER_S,
                )
            self._slots.check_share(key.principal)
            start = self._starting[key] = _Start()
            self._context.run(
                self._nursery.start_soon, self._spawn, key, start, one_turn, fork, system, model
            )
        await start.done.wait()
        if isinstance(start.error, RetryLaterError):
            raise start.error
        if start.error is not None:
            raise SessionStartError(f"could not start Claude Code: {start.error}") from (
                start.error
            )

    def _new_actor(
        self, key: SessionKey | None, cwd: Path, one_turn: bool, fork: ForkPoint | None = None
    ) -> SessionActor:
        make_workspace(cwd)
        return SessionActor(
            key,
            cwd,
            client_factory=self._client_factory,
            policy=self.config.policy,
            mailbox_size=self.config.mailbox_size,
            fanout_buffer=self.config.fanout_buffer_size,
            slots=self._slots,
            one_turn=one_turn,
            fork_from=fork,
            on_retire=self._forget,
            on_idle=self._actor_idle,
            observer=self._observers,
        )

    async def _spawn(
        self,
        key: SessionKey,
        start: _Start,
        one_turn: bool,
        fork: ForkPoint | None,
        system: str | None,
        model: str | None,
    ) -> None:
        """Get the session an actor and register it: a session known from before resumes
        in its own workspace; otherwise a warm actor is adopted if there is one, else a
        new actor is started (registered once its client is connected).

        A fork never adopts a warm actor: its CLI must start by resuming the parent's
        conversation. Nor does a new session whose opening turn adds to the system
        prompt (``system``): a running CLI cannot take a system prompt any more. Its own
        CLI reads the text from a file in the session's workspace."""
        try:
            known = None if one_turn or fork else await self._load(key)
            await self._slots.take_share(key.principal)  # adopting a warm actor takes a slot too
            adoptable = known is None and fork is None and system is None
            if adoptable and (actor := self._pool.take(model)) is not None:
                actor.adopt(key, one_turn=one_turn)
                self._slots.notify()
            else:
                await self._slots.wait_for_room(None)
                # A session known from before resumes in its workspace, if that is here
                # (a session handed over from another machine gets a new one).
                cwd = known.cwd if known and known.cwd.is_dir() else self._fresh_workspace(key)
                actor = self._new_actor(key, cwd, one_turn, fork)
                if known is not None:
                    actor.restore(known)
                else:
                    set_system_prompt(cwd, system)
                await self._nursery.start(self._supervise, actor)
                self.forks += fork is not None
        except Exception as exc:
            log.warning("session %s could not start: %r", key.session_id, exc)
            start.error = exc
        else:
            self._sessions[key] = actor
            self._wake_session_waiters(key)
        finally:
            del self._starting[key]
            start.done.set()
            self._pool.notify()  # the pool holds off while sessions are starting

    def _fresh_workspace(self, key: SessionKey) -> Path:
        """The working directory of a new session: named by ``workspace_name``, or, if a
        directory of that name is still there (e.g. it went with a renamed session),
        that name with a random suffix. Not a checkpoint."""
        path = self.config.workspace_root / workspace_name(key)
        if path.exists():
            path = path.with_name(f"{path.name}-{uuid.uuid4().hex[:8]}")
        return path

    async def _supervise(
        self,
        actor: SessionActor,
        *,
        task_status: trio.TaskStatus[SessionActor] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one actor until it ends or goes dormant; a failure after its start is
        logged, counted and the actor forgotten (a failure before it is re-raised to
        ``nursery.start``)."""
        # The actor holds ``task_status`` only until it has started (it refers to the
        # starting task): this frame must not hold it for the session's life either.
        run = actor.run(task_status=task_status)
        del task_status
        try:
            with actor.scope:
                await run
        except Exception:
            if not actor.started:
                raise
            self.sessions_failed += 1
            log.exception("session %s closed", actor.key)
        finally:
            if actor.dormant:
                self._retention.time(actor)
            else:
                await self._bury(actor)

    async def _bury(self, actor: SessionActor) -> None:
        """After an actor ended for good (or handed its session off): its counts go to
        the totals, observers hear of a forgotten session, the workspace of a closed or
        one-turn session is removed; then ``actor.done`` is set."""
        self.dead_letters += actor.dead_letters
        self._totals.update(actor.timeouts)
        self._totals["restarts"] += actor.restarts
        if actor.forgotten and actor.key is not None and not actor.one_turn:
            self._observers.session_forgotten(actor.key)
        if actor.one_turn or actor.key is None or actor.scope.cancel_called:
            await remove_workspace(actor.cwd)
        actor.done.set()

    def _revive(self, actor: SessionActor) -> None:
        """Run a dormant actor again (a turn for it follows at once). Not a checkpoint."""
        actor.revive()
        self._context.run(self._nursery.start_soon, self._supervise, actor)

    def _end_dormant(self, actor: SessionActor) -> None:
        """End a dormant actor for good (closed, handed off, or past its retention): as
        its task would have, had it one. Not a checkpoint."""
        actor.retire_dormant()
        self._context.run(self._nursery.start_soon, self._bury, actor)

    def _registered(self, actor: SessionActor) -> bool:
        return actor.key is not None and self._sessions.get(actor.key) is actor

    def _expire(self, actor: SessionActor) -> None:
        """A dormant session's retention passed: forget it. Not a checkpoint."""
        log.info("session %s forgotten after retention", actor.key)
        actor.forgotten = True
        self._end_dormant(actor)

    async def _load(self, key: SessionKey) -> SessionRecord | None:
        """The directory's record of ``key``, if any; a failing directory is logged and
        treated as knowing nothing (the session then starts afresh)."""
        if self._directory is None:
            return None
        try:
            return await self._directory.load(key)
        except Exception:
            log.exception("could not look up session %s in the session directory", key)
            return None

    def _forget(self, actor: SessionActor) -> None:
        """Unregister a retiring actor (only if it is still the one registered)."""
        if actor.key is not None and self._sessions.get(actor.key) is actor:
            del self._sessions[actor.key]
        self._pool.discard(actor)
        self._changed.unpark_all()

    # -- Warm pool and live slots -----------------------------------------------------

    async def forget_past_retention(self) -> None:
        """Forget each dormant session once its retention has passed (exactly
        ``retention_s`` after its last turn), until cancelled (``open_supervisor`` runs
        it)."""
        await self._retention.run()

    async def keep_pool_warm(self) -> None:
        """Keep the warm pool filled until cancelled (``open_supervisor`` runs it)."""
        await self._pool.keep_warm(self._nursery, lambda: self._closed or bool(self._starting))

    async def _start_warm_actor(self) -> SessionActor:
        """Start one unassigned actor for the warm pool; returns it once connected."""
        actor = self._new_actor(None, self.config.workspace_root / f"w-{uuid.uuid4().hex}", False)
        actor.warm_model = self._pool.model  # the model new sessions asked for lately
        await self._nursery.start(self._supervise, actor)
        return actor

    def _slots_changed(self) -> None:
        """A slot was released or the last waiter for one left: the pool may refill."""
        self._pool.notify()
        self._changed.unpark_all()

    def _actor_idle(self) -> None:
        """An actor connected or ended a turn: it may be evictable now, and idle."""
        self._slots.notify()
        self._pool.notify()
        self._changed.unpark_all()

    def add_observer(self, observer: Observer) -> None:
        """Have ``observer`` notified of every turn's end and every CLI start from now on.
        Not a checkpoint."""
        self._observers.members.append(observer)

    # -- Shutdown and listings --------------------------------------------------------

    def close(self) -> None:
        """Refuse new turns from now on. Not a checkpoint; running turns go on."""
        self._closed = True

    def _retire_all_dormant(self) -> None:
        """At shutdown: end every dormant actor (their listeners' channels end), as the
        cancelled tasks of the others end them. Not a checkpoint."""
        for actor in [a for a in self._sessions.values() if a.dormant]:
            actor.retire_dormant()
            actor.done.set()

    @property
    def closing(self) -> bool:
        """Whether ``close`` was called (the server drains). Not a checkpoint."""
        return self._closed

    async def wait_idle(self) -> None:
        """Wait until no session is running or has waiting turns."""
        while any(a.state == "busy" or a.mailbox_depth for a in self._sessions.values()):
            await self._changed.park()

    def sessions(self) -> list[SessionInfo]:
        """Snapshots of every session, oldest first (ties by id). Not a checkpoint."""
        infos = [session_info(actor) for actor in self._sessions.values()]
        return sorted(infos, key=lambda info: (info.created_at, info.session_id))

    def session(self, key: SessionKey) -> SessionInfo | None:
        """A snapshot of one session, or ``None`` if there is none. Not a checkpoint."""
        actor = self._sessions.get(key)
        return None if actor is None else session_info(actor)

    def stats(self) -> dict[str, Any]:
        """Counters for operators: sessions, pool, mailboxes, restarts, dead letters,
        timeouts by kind. Not a checkpoint."""
        actors = list(self._sessions.values())
        timeouts = self._totals.copy()
        for actor in actors:
            timeouts.update(actor.timeouts)
        return {
            "sessions": len(actors),
            "live_sessions": sum(a.live for a in actors),
            "hibernated_sessions": sum(not a.live for a in actors),
            "busy_sessions": sum(a.state == "busy" for a in actors),
            "live_processes": len(self._slots),
            "warm_pool_size": len(self._pool),
            "warm_pids": self._pool.pids,
            "waiting_turns": sum(a.mailbox_depth for a in actors),
            "max_mailbox_depth": max((a.mailbox_depth for a in actors), default=0),
            "restarts": self._totals["restarts"] + sum(a.restarts for a in actors),
            "sessions_failed": self.sessions_failed,
            "forks": self.forks,
            "dead_letters": self.dead_letters + sum(a.dead_letters for a in actors),
            "listener_drops": sum(a.fanout.dropped_total for a in actors),
            "timeouts": {kind: timeouts[kind] for kind in ("first_chunk", "stream_idle")},
        }


class _Observers(Observer):
    """Fans notices out to every observer added to the supervisor."""

    def __init__(self) -> None:
        self.members: list[Observer] = []

    def turn_ended(self, record: TurnRecord) -> None:
        for observer in self.members:
            observer.turn_ended(record)

    def cli_started(self, session_id: str | None, pid: int | None) -> None:
        for observer in self.members:
            observer.cli_started(session_id, pid)

    def session_forgotten(self, key: SessionKey) -> None:
        for observer in self.members:
            observer.session_forgotten(key)


class SessionOwnership(Protocol):
    """Which node drives which session, in a cluster of nodes (``app.cluster``)."""

    async def claim(self, key: SessionKey) -> None:
        """Return once this node may drive ``key`` (at once if it already does).

        Raises:
            RetryLaterError: another node still drives it and did not hand it over in
                time.
        """
        ...


class SessionDirectory(Protocol):
    """Where sessions known from before are looked up (e.g. a database that outlives
    the server process)."""

    async def load(self, key: SessionKey) -> SessionRecord | None:
        """The record of ``key``, or ``None`` if it is not known."""
        ...


@asynccontextmanager
async def open_supervisor(
    config: SupervisorConfig,
    client_factory: ClientFactory,
    *,
    directory: SessionDirectory | None = None,
    ownership: SessionOwnership | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a supervisor (and its warm pool) for the duration of the block.

    Args:
        config: limits, the workspace root and the actors' policy.
        directory: where to look up sessions not running now (e.g. from before a
            restart): a turn for one of them resumes its conversation in its workspace.
        ownership: in a cluster, claims each session for this node before its turns.
        client_factory: opens a connected ``ClaudeClient`` per CLI lifetime
            (``functools.partial(open_sdk_client, cli_options)`` for the real CLI;
            ``actors.testing.ScriptedClientFactory`` in tests).

    Leaving the block (normally, by an exception, or by cancellation) stops every actor:
    running turns fail with ``session_closed`` and every CLI process is closed before the
    block exits.
    """
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(config, client_factory, nursery, directory, ownership)
        nursery.start_soon(supervisor.keep_pool_warm)
        nursery.start_soon(supervisor.forget_past_retention)
        try:
            yield supervisor
        finally:
            supervisor.close()
            nursery.cancel_scope.cancel()
            supervisor._retire_all_dormant()
