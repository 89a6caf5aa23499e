"""The supervisor's children: the session actors it has registered, the starts under
way, and the tasks that start, supervise, revive and bury them (``Children``).

``Supervisor`` (``actors._supervisor``) admits turns and answers for sessions; how an
actor comes to serve a key (adopted from the warm pool, resumed from the session
directory, or started afresh), how its task is supervised, and how it is ended (dormant,
then past its retention, or for good) is here, with the live slots and the warm pool
those lives draw on.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import trio

from ._actor import SessionActor
from ._client import ClientFactory, limit_starts
from ._config import SupervisorConfig
from ._pool import WarmPool
from ._retention import RetentionTimer
from ._slots import BUSY_RETRY_AFTER_S, LiveSlots
from ._types import (
    CapacityError,
    ForkPoint,
    Observer,
    PrincipalLimitError,
    RetryLaterError,
    SessionKey,
    SessionNotFoundError,
    SessionRecord,
    SessionStartError,
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


class SessionDirectory(Protocol):
    """Where sessions known from before are looked up (e.g. a database that outlives
    the server process)."""

    async def load(self, key: SessionKey) -> SessionRecord | None:
        """The record of ``key``, or ``None`` if it is not known."""
        ...


class _Start:
    """A session whose actor is being started; callers for that session wait on it."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BaseException | None = None


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


class Children:
    """A supervisor's session actors, each one task in ``nursery``, from their start to
    their end. Only the supervisor's task and the actors' call it; nothing here is a
    checkpoint but where it says it waits.

    Attributes:
        registered: the actor serving each session (live, hibernated or dormant).
        starting: the sessions whose actor is being started (their first turn waits).
        slots: the live CLI processes (``LiveSlots``); ``pool``: the warm pool.
        observers: notified of every turn's end, CLI start and session forgotten.
        changed: unparked whenever an actor goes idle or retires, or a slot frees.
        dead_letters, sessions_failed, forks, totals: counts of ended actors (turns
            failed in their mailboxes, actors failed after their start, sessions started
            as forks; timeouts and restarts by kind), for ``Supervisor.stats``.

    Args:
        config: limits, the workspace root and the actors' policy.
        client_factory: opens a connected ``ClaudeClient`` per CLI lifetime; at most
            ``config.max_concurrent_starts`` (unset: ``STARTS_PER_CPU`` per CPU) start at
            once.
        nursery: where every actor's task runs.
        directory: where sessions not registered are looked up before one is started.
    """

    def __init__(
        self,
        config: SupervisorConfig,
        client_factory: ClientFactory,
        nursery: trio.Nursery,
        directory: SessionDirectory | None = None,
    ) -> None:
        self._config = config
        self._directory = directory
        starts = config.max_concurrent_starts or STARTS_PER_CPU * (os.cpu_count() or 1)
        self._client_factory = limit_starts(client_factory, trio.CapacityLimiter(starts))
        self._nursery = nursery
        # The context of the task that opened the supervisor: an actor is started in a
        # copy of it, not of the caller's (a request's), whose variables (the request,
        # its id in log lines) would otherwise live as long as the session.
        self._context = contextvars.copy_context()
        self.registered: dict[SessionKey, SessionActor] = {}
        self.starting: dict[SessionKey, _Start] = {}
        self._waiters: dict[SessionKey, trio.lowlevel.ParkingLot] = {}
        self.slots = LiveSlots(
            config.max_live_sessions,
            wait_s=config.live_slot_wait_s,
            share=config.max_live_sessions_per_principal,
            on_change=self._slots_changed,
        )
        self.pool = WarmPool(config.warm_pool_size, self.slots, self._start_warm_actor)
        self.changed = trio.lowlevel.ParkingLot()
        self.observers = _Observers()
        self.dead_letters = 0
        self.sessions_failed = 0
        self.forks = 0
        self.totals: collections.Counter[str] = collections.Counter()
        # Forgets dormant sessions at their retention: one task for all of them.
        self._retention = RetentionTimer(
            self._expire, self._is_registered, lambda: len(self.registered)
        )

    # -- Finding and renaming -------------------------------------------------------------

    def actor(self, key: SessionKey) -> SessionActor:
        """The actor of session ``key``.

        Raises:
            SessionNotFoundError: no such session is registered.
        """
        actor = self.registered.get(key)
        if actor is None:
            raise SessionNotFoundError(f"no session {key.session_id!r}")
        return actor

    def rename(self, old: SessionKey, new: SessionKey) -> bool:
        """Register the actor of ``old`` as ``new`` (``Supervisor.rename_session``).

        Returns ``False`` (nothing changed) while ``old`` is being started or is not
        ``unoccupied``, or if ``new`` is taken or being started.

        Raises:
            SessionNotFoundError: ``old`` is not registered.
        """
        if old in self.starting or new in self.starting or new in self.registered:
            return False
        actor = self.actor(old)
        if not actor.unoccupied:
            return False
        del self.registered[old]
        actor.rekey(new)
        self.registered[new] = actor
        self._wake_waiters(new)
        return True

    async def wait_for(self, key: SessionKey) -> None:
        """Wait until session ``key`` is registered (``Supervisor.wait_for_session``).
        Returns after a checkpoint if it is already; if cancelled, leaves nothing
        behind."""
        await trio.lowlevel.checkpoint()
        while key not in self.registered:
            lot = self._waiters.setdefault(key, trio.lowlevel.ParkingLot())
            try:
                await lot.park()
            finally:
                if not len(lot) and self._waiters.get(key) is lot:
                    del self._waiters[key]

    def _wake_waiters(self, key: SessionKey) -> None:
        """Wake every ``wait_for(key)``: the session was just registered."""
        lot = self._waiters.pop(key, None)
        if lot is not None:
            lot.unpark_all()

    def _is_registered(self, actor: SessionActor) -> bool:
        return actor.key is not None and self.registered.get(actor.key) is actor

    # -- Starting sessions ----------------------------------------------------------------

    async def start(
        self,
        key: SessionKey,
        *,
        one_turn: bool,
        fork: ForkPoint | None = None,
        system: str | None = None,
        model: str | None = None,
    ) -> None:
        """Start the actor for ``key`` (adopting a warm one if any), or wait for the
        start already under way; on return it is registered. ``system`` and ``model``
        are the opening turn's ``Turn.system`` and ``Turn.model``.

        Raises:
            CapacityError: ``max_sessions`` sessions exist, or no live slot came.
            PrincipalLimitError: the principal has ``max_sessions_per_principal``
                sessions, or its share of live CLIs with none of its sessions idle.
            SessionStartError: the actor's client could not be connected.
        """
        start = self.starting.get(key)
        if start is None:
            if len(self.registered) + len(self.starting) >= self._config.max_sessions:
                raise CapacityError(
                    f"all {self._config.max_sessions} sessions are in use",
                    retry_after_s=BUSY_RETRY_AFTER_S,
                )
            owned = sum(k.principal == key.principal for k in (*self.registered, *self.starting))
            if owned >= self._config.max_sessions_per_principal:
                raise PrincipalLimitError(
                    f"this key already has {owned} sessions (at most "
                    f"{self._config.max_sessions_per_principal}); delete one or wait for one "
                    "to be forgotten",
                    retry_after_s=BUSY_RETRY_AFTER_S,
                )
            self.slots.check_share(key.principal)
            start = self.starting[key] = _Start()
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
            policy=self._config.policy,
            mailbox_size=self._config.mailbox_size,
            fanout_buffer=self._config.fanout_buffer_size,
            slots=self.slots,
            one_turn=one_turn,
            fork_from=fork,
            on_retire=self.forget,
            on_idle=self._actor_idle,
            observer=self.observers,
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
            await self.slots.take_share(key.principal)  # adopting a warm actor takes a slot too
            adoptable = known is None and fork is None and system is None
            if adoptable and (actor := self.pool.take(model)) is not None:
                actor.adopt(key, one_turn=one_turn)
                self.slots.notify()
            else:
                await self.slots.wait_for_room(None)
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
            self.registered[key] = actor
            self._wake_waiters(key)
        finally:
            del self.starting[key]
            start.done.set()
            self.pool.notify()  # the pool holds off while sessions are starting

    def _fresh_workspace(self, key: SessionKey) -> Path:
        """The working directory of a new session: named by ``workspace_name``, or, if a
        directory of that name is still there (e.g. it went with a renamed session),
        that name with a random suffix. Not a checkpoint."""
        path = self._config.workspace_root / workspace_name(key)
        if path.exists():
            path = path.with_name(f"{path.name}-{uuid.uuid4().hex[:8]}")
        return path

    # -- An actor's task, and its end -----------------------------------------------------

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
        self.totals.update(actor.timeouts)
        self.totals["restarts"] += actor.restarts
        if actor.forgotten and actor.key is not None and not actor.one_turn:
            self.observers.session_forgotten(actor.key)
        if actor.one_turn or actor.key is None or actor.scope.cancel_called:
            await remove_workspace(actor.cwd)
        actor.done.set()

    def revive(self, actor: SessionActor) -> None:
        """Run a dormant actor again (a turn for it follows at once). Not a checkpoint."""
        actor.revive()
        self._context.run(self._nursery.start_soon, self._supervise, actor)

    def end_dormant(self, actor: SessionActor) -> None:
        """End a dormant actor for good (closed, handed off, or past its retention): as
        its task would have, had it one. Not a checkpoint."""
        actor.retire_dormant()
        self._context.run(self._nursery.start_soon, self._bury, actor)

    def _expire(self, actor: SessionActor) -> None:
        """A dormant session's retention passed: forget it. Not a checkpoint."""
        log.info("session %s forgotten after retention", actor.key)
        actor.forgotten = True
        self.end_dormant(actor)

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

    def forget(self, actor: SessionActor) -> None:
        """Unregister a retiring actor (only if it is still the one registered)."""
        if actor.key is not None and self.registered.get(actor.key) is actor:
            del self.registered[actor.key]
        self.pool.discard(actor)
        self.changed.unpark_all()

    # -- The warm pool, retention and shutdown --------------------------------------------

    async def forget_past_retention(self) -> None:
        """Forget each dormant session once its retention has passed (exactly
        ``retention_s`` after its last turn), until cancelled."""
        await self._retention.run()

    async def keep_pool_warm(self, closed: Callable[[], bool]) -> None:
        """Keep the warm pool filled until cancelled; it holds off while ``closed()`` or
        while sessions are starting."""
        await self.pool.keep_warm(self._nursery, lambda: closed() or bool(self.starting))

    async def _start_warm_actor(self) -> SessionActor:
        """Start one unassigned actor for the warm pool; returns it once connected."""
        actor = self._new_actor(None, self._config.workspace_root / f"w-{uuid.uuid4().hex}", False)
        actor.warm_model = self.pool.model  # the model new sessions asked for lately
        await self._nursery.start(self._supervise, actor)
        return actor

    def _slots_changed(self) -> None:
        """A slot was released or the last waiter for one left: the pool may refill."""
        self.pool.notify()
        self.changed.unpark_all()

    def _actor_idle(self) -> None:
        """An actor connected or ended a turn: it may be evictable now, and idle."""
        self.slots.notify()
        self.pool.notify()
        self.changed.unpark_all()

    def retire_all_dormant(self) -> None:
        """At shutdown: end every dormant actor (their listeners' channels end), as the
        cancelled tasks of the others end them. Not a checkpoint."""
        for actor in [a for a in self.registered.values() if a.dormant]:
            actor.retire_dormant()
            actor.done.set()
