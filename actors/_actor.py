"""SessionActor: one task that owns a session's Claude Code client through its CLI
lifetimes (open, resume, hibernate, restart) and runs its turns one at a time.

Running one turn is ``actors._turn``; Claude Code's permission questions are
``actors._permissions``; the policy the actor enforces is ``actors._policy``.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import trio

from ._client import ClaudeClient, ClientError, ClientFactory, ModelRefusedError, SessionSpec
from ._fanout import FanOut
from ._logcontext import session_id_var, turn_id_var
from ._permissions import PermissionBroker
from ._policy import ActorPolicy
from ._turn import CliWedgedError, Envelope, TurnDeadlines, TurnRunner
from ._types import (
    ForkPoint,
    Observer,
    PermissionRequest,
    RetryLaterError,
    SessionEvent,
    SessionKey,
    SessionRecord,
    TurnCompleted,
    TurnFailed,
    TurnRecord,
)
from ._workspaces import system_prompt_file

log = logging.getLogger(__name__)

ActorState = Literal["starting", "idle", "busy", "closing"]


# Why an idle actor stopped waiting for its next turn (other than a turn arriving).
@dataclass(frozen=True, slots=True)
class IdleExpired:
    """The idle TTL ran out."""


@dataclass(frozen=True, slots=True)
class Evict:
    """Asked to hibernate now, to free its live slot for another session."""


@dataclass(frozen=True, slots=True)
class CliExited:
    """Its CLI process exited while the session was idle."""


@dataclass(frozen=True, slots=True)
class HandOff:
    """Asked to stop driving the session (another node will) once no turn is left."""


WakeUp = IdleExpired | Evict | CliExited | HandOff


class LiveSlots(Protocol):
    """Where an actor gets permission to run a CLI process (``actors._slots``)."""

    async def acquire(self, actor: SessionActor) -> None:
        """Take a live slot, evicting an idle session if needed. Raises CapacityError
        or PrincipalLimitError."""
        ...

    def release(self, actor: SessionActor) -> None: ...


class SessionFailedError(Exception):
    """The session's CLI failed too often (restart intensity exceeded); it is closed."""


class _StartFailedError(ClientError):
    """The CLI of a lifetime could not even start (e.g. its conversation to resume)."""


class SessionActor:
    """Runs the turns of one session, one at a time, in arrival order.

    The actor is one task (``run``) through any number of CLI lifetimes: it opens a
    client, serves turns from its bounded mailbox, and closes the client when the
    session hibernates (idle), is evicted, or the CLI fails (then it reopens one at
    once, resuming the conversation). A client never leaves this task. Hibernated with
    no turn queued, the task ends and the actor is ``dormant``: the session keeps only
    this object (its ids, workspace and listeners; no mailbox), and the supervisor runs
    ``run`` again for its next turn (``revive``) or forgets it after ``retention_s``
    (``retire_dormant``). Other tasks only read the public attributes (plain
    snapshots) and call the methods marked "not a checkpoint"; every reason to stop
    waiting for a turn arrives as a message (``IdleExpired``, ``Evict``, ``CliExited``),
    never as a flag.

    Attributes:
        key: the session (``None`` while it is an unassigned warm-pool actor).
        state: ``starting``, ``idle``, ``busy`` or ``closing``.
        live: a CLI process is running for this session (else it is hibernated).
        dormant: hibernated with no task (``run`` ended, to be run again for a turn).
        cli_pid, claude_session_id, turns, restarts, last_error, timeouts: for stats.
        model: the model the session runs, as named to its CLI (``policy.launch_model``
            until a turn asks for another); a resumed CLI is switched to it before its
            first turn.
        created_at, last_active_at: wall-clock times (seconds since the epoch).
        fanout: the session's listeners.
        done: set once the actor has ended for good (not when it goes dormant).
        forgotten: it ended for good (retention, failures, deletion), not just stopped.
        fork_from: the conversation this session branches off, while it has no Claude
            session of its own yet (its CLI then resumes there as a fork).
        warm_model: for a warm-pool actor, the model to switch its CLI to before it is
            offered (the model new sessions ask for lately; ``None``: keep the launch
            model).
    """

    # Slots, not a __dict__: a hibernated session keeps its actor (~1.2 KiB less each).
    __slots__ = (
        "_carry", "_client_factory", "_current", "_done", "_handing_off", "_idle_since",
        "_mailbox_receive", "_mailbox_send", "_mailbox_size", "_observer", "_on_idle",
        "_on_retire", "_permissions", "_policy", "_restart_times", "_runner", "_served",
        "_slots", "_task_status", "_waiting", "_wake_up", "claude_session_id", "cli_pid",
        "closing_reason", "created_at", "cwd", "dead_letters", "dormant", "fanout",
        "forgotten", "fork_from", "key", "last_active_at", "last_error", "live", "model",
        "one_turn", "restarts", "scope", "started", "state", "timeouts", "turns",
        "warm_model",
    )  # fmt: skip

    def __init__(
        self,
        key: SessionKey | None,
        cwd: Path,
        *,
        client_factory: ClientFactory,
        policy: ActorPolicy,
        mailbox_size: int,
        fanout_buffer: int = 256,
        slots: LiveSlots,
        one_turn: bool = False,
        fork_from: ForkPoint | None = None,
        on_retire: Callable[[SessionActor], None] = lambda actor: None,
        on_idle: Callable[[], None] = lambda: None,
        observer: Observer | None = None,
    ) -> None:
        self.key = key
        self.cwd = cwd
        self.one_turn = one_turn
        self.state: ActorState = "starting"
        self.started = False  # the first client connected and ``run`` reported started
        self.live = False
        self.dormant = False
        self.cli_pid: int | None = None
        self.claude_session_id: str | None = None
        self.model: str | None = policy.launch_model
        self.turns = 0
        self.restarts = 0
        self.dead_letters = 0
        self.last_error: str | None = None
        self.timeouts: collections.Counter[str] = collections.Counter()
        self.created_at = self.last_active_at = time.time()
        self.fanout = FanOut(fanout_buffer)
        self.scope = trio.CancelScope()  # around ``run``; cancelled by ``close``
        self._done: trio.Event | None = None  # made by ``done`` when first wanted
        self.closing_reason = "the server is shutting down"
        self.forgotten = False
        self._handing_off = False
        self.fork_from = fork_from
        self.warm_model: str | None = None
        self._runner: TurnRunner | None = None  # of the live CLI, if any
        self._client_factory = client_factory
        self._policy = policy
        self._slots = slots
        self._on_retire = on_retire
        self._on_idle = on_idle
        self._observer = observer or Observer()
        # The mailbox; none while dormant (~1.7 KiB less for each hibernated session).
        self._mailbox_send: trio.MemorySendChannel[Envelope] | None = None
        self._mailbox_receive: trio.MemoryReceiveChannel[Envelope] | None = None
        self._mailbox_size = mailbox_size
        self._open_mailbox()
        self._permissions = PermissionBroker(
            self.fanout, policy.permission_timeout_s, self._current_turn_id
        )
        self._idle_since = trio.current_time()
        self._waiting: trio.CancelScope | None = None  # while waiting for a turn
        self._wake_up: WakeUp | None = None  # why that wait was cut short
        self._current: Envelope | None = None  # the running turn
        self._carry: Envelope | None = None  # a turn in hand, to run on the next client
        self._served = False  # this lifetime ran a turn (see ``evictable``)
        self._restart_times: list[float] = []  # a deque would take ~0.5 KiB when empty
        self._task_status: trio.TaskStatus[SessionActor] | None = None  # while starting

    # -- Called by other tasks (none of these is a checkpoint) ------------------------

    def submit_nowait(self, envelope: Envelope) -> None:
        """Put a turn in the mailbox (a ``dormant`` actor is revived first). Not a
        checkpoint.

        Raises:
            trio.WouldBlock: the mailbox is full.
            trio.BrokenResourceError: the actor has retired; use another actor.
        """
        if self._mailbox_send is None:
            raise trio.BrokenResourceError("the actor has no mailbox: it is dormant or retired")
        self._mailbox_send.send_nowait(envelope)

    def _open_mailbox(self) -> None:
        self._mailbox_send, self._mailbox_receive = trio.open_memory_channel[Envelope](
            self._mailbox_size
        )

    def adopt(self, key: SessionKey, *, one_turn: bool = False) -> None:
        """Make this warm-pool actor the actor of session ``key``. Not a checkpoint."""
        self.key, self.one_turn = key, one_turn
        self.created_at = self.last_active_at = time.time()
        self._idle_since = trio.current_time()
        self._served = False  # not evictable before the turn that adopted it

    def rekey(self, key: SessionKey) -> None:
        """Serve as session ``key`` from now on (the supervisor renames a session that is
        ``unoccupied``); its CLI, conversation, workspace and listeners stay. Not a
        checkpoint."""
        self.key = key
        if self._runner is not None:
            self._runner.rename(key.session_id)

    @property
    def unoccupied(self) -> bool:
        """Waiting for a turn (live or hibernated) with none running, in hand or queued."""
        return (
            self.started
            and self.state == "idle"
            and self._current is None
            and self._carry is None
            and not self.mailbox_depth
        )

    def interrupt(self) -> bool:
        """Interrupt the running turn, if any; its caller gets ``TurnFailed(interrupted)``.
        Returns whether a turn was running. Not a checkpoint."""
        if self._current is None or self._current.finished:
            return False  # (a finished turn may still be draining: that is ours)
        self._current.interrupt_reason = "interrupted on request"
        self._current.cancel_scope.cancel()
        return True

    def evict(self) -> bool:
        """Hibernate now if idle and live (to free a live slot). Returns whether it will.
        Not a checkpoint."""
        if not self.evictable:
            return False
        self._wake(Evict())
        return True

    def hand_off(self) -> None:
        """Stop once the turns running and queued now are over: close the CLI and end,
        not forgotten, so that another node can resume the session.
        Turns queued after that fail with ``session_closed``. Not a checkpoint."""
        self._handing_off = True
        self.closing_reason = "the session moved to another node"
        self._wake(HandOff())

    def close(self, reason: str) -> None:
        """Close the session for good: its running turn and waiting turns fail with
        ``session_closed`` and ``reason``, its CLI is closed, and ``done`` is set once
        that is over. Not a checkpoint."""
        self.closing_reason = reason
        self.forgotten = True
        self.scope.cancel()

    def revive(self) -> None:
        """Make a ``dormant`` actor ready to ``run`` again (its next turn is on its way).
        Not a checkpoint."""
        assert self.dormant
        self.dormant = False
        self.scope = trio.CancelScope()  # each run has its own
        self._open_mailbox()

    def retire_dormant(self) -> None:
        """End a ``dormant`` actor as ``run`` ends one for good (it holds no CLI and no
        turn): it accepts no more turns and its listeners' channels end. Not a
        checkpoint."""
        assert self.dormant
        self.dormant = False
        self._retire()

    @property
    def done(self) -> trio.Event:
        """Set once the actor has ended for good. Made when first asked for: most
        sessions end with nobody waiting, and an ``Event`` (its empty set of waiters)
        would be ~0.3 KiB more for every hibernated session."""
        if self._done is None:
            self._done = trio.Event()
        return self._done

    @property
    def retention_deadline(self) -> float:
        """When a dormant actor is forgotten if no turn comes (trio time)."""
        return self._idle_since + self._policy.retention_s

    def answer_permission(self, request_id: str, allow: bool, message: str = "") -> bool:
        """Answer a pending ``PermissionRequest``. Returns False if there is none with
        that id (answered already, timed out, or never asked). Not a checkpoint."""
        return self._permissions.answer(request_id, allow, message)

    def pending_permissions(self) -> list[PermissionRequest]:
        """Questions not answered yet, oldest first (replayed to a new listener)."""
        return self._permissions.pending()

    @property
    def first_turn_over(self) -> bool:
        """Whether a turn has run and ended since its CLI connected or it was adopted
        (or it is closing). Not a checkpoint."""
        return self.state == "closing" or (self._served and self.state != "busy")

    @property
    def evictable(self) -> bool:
        """Whether hibernating this actor would free a slot no turn is about to use: it
        is live, waiting for a turn with none queued and not already told to stop
        waiting, and (for a session) has served a turn since it connected or was
        adopted, since its first turn is on its way. A warm actor is adopted only if
        evictable, so one already told to hibernate is never handed a session."""
        return (
            self.live
            and self.state == "idle"
            and self._waiting is not None
            and self._wake_up is None  # not already leaving
            and not self.mailbox_depth
            and (self.key is None or self._served)
        )

    @property
    def mailbox_depth(self) -> int:
        """Turns waiting in the mailbox (not counting the running one)."""
        if self._mailbox_send is None:
            return 0
        return self._mailbox_send.statistics().current_buffer_used

    def seconds_until_idle_expiry(self) -> int | None:
        """Whole seconds (at least 1) until this live idle session hibernates, else None."""
        if not self.evictable:
            return None
        deadline = self._idle_since + self._policy.idle_ttl_s
        return max(1, math.ceil(deadline - trio.current_time()))

    def _wake(self, reason: WakeUp) -> None:
        """Stop the wait for the next turn, for ``reason`` (the first reason wins)."""
        if self._waiting is not None and self._wake_up is None:
            self._wake_up = reason
            self._waiting.cancel()

    def _current_turn_id(self) -> str:
        return "" if self._current is None else self._current.turn.turn_id

    # -- The actor task: CLI lifetimes ------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[SessionActor]) -> None:
        """Serve the session until it goes dormant (hibernated, no turn queued), is
        handed off, forgotten, closed, or cancelled; run again after ``revive``.

        Follows the nursery start protocol: ``started`` is called once the first client
        is connected.

        Raises:
            ClientError: the first client could not be started.
            CapacityError, PrincipalLimitError: no live slot for the first client.
            SessionFailedError: the CLI failed more often than the restart intensity.

        If cancelled (``close``, supervisor shutdown), the running turn gets
        ``TurnFailed(reason="session_closed")`` and the client is closed.
        """
        # Held only until started: it refers to the task that started this one, which
        # a hibernated session would otherwise keep for as long as it is remembered.
        self._task_status = task_status
        del task_status
        try:
            # Revived: the turn that woke it in hand (or, its caller gone, dormant again).
            if self.started and not self._stay_awake():
                return
            while True:
                try:
                    await self._lifetime()
                except ClientError as exc:
                    if not self.started:
                        raise
                    self._count_restart(exc)
                    if isinstance(exc, _StartFailedError) and (
                        self.claude_session_id or self.fork_from
                    ):
                        self._start_afresh(exc)
                    continue
                except RetryLaterError as exc:  # no live slot (or not within its key's share)
                    if not self.started:
                        raise
                    if self._carry is not None:
                        self._carry.abandon("overloaded", str(exc), self.fanout)
                        self._carry = None
                if self.one_turn or self.key is None or not self._stay_awake():
                    return
        finally:
            if not self.dormant:
                self._retire()

    def _stay_awake(self) -> bool:
        """Hibernated (no CLI): take the next queued turn in hand and go on (``True``),
        or end the task: handed off, or ``dormant`` until a turn revives it. Not a
        checkpoint, so a turn submitted once this returns ``False`` finds the actor
        dormant (or retired), never waiting in a mailbox no task reads."""
        self._carry = self._take_queued()
        if self._carry is not None:
            return True
        if self._handing_off:
            log.info("session %s handed off", self.key)
        else:
            self.dormant = True
            self._mailbox_send = self._mailbox_receive = None  # empty: a new one on revival
        return False

    def _take_queued(self) -> Envelope | None:
        """The next queued turn whose caller still wants it, if any. Not a checkpoint."""
        assert self._mailbox_receive is not None  # not dormant
        while True:
            try:
                envelope = self._mailbox_receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return None
            if not envelope.cancel_scope.cancel_called:
                return envelope
            envelope.abandon("interrupted", "cancelled before it started", self.fanout)

    def _start_afresh(self, exc: ClientError) -> None:
        """The CLI would not even start resuming (or forking): the transcript is gone or
        broken. Go on with a new conversation rather than fail every turn; say so in
        last_error."""
        resumed = self.claude_session_id or (self.fork_from and self.fork_from.claude_session_id)
        log.warning("session %s: could not resume %s; starting afresh", self.key, resumed)
        self.last_error = (
            f"conversation {resumed} could not be resumed ({exc}); a new one was started"
        )
        self.claude_session_id = None
        self.fork_from = None

    async def _lifetime(self) -> None:
        """One CLI lifetime: take a live slot, open a client (resuming), serve turns, and
        close it when the session hibernates.

        Raises:
            _StartFailedError: the CLI could not start; any turn in hand is in ``_carry``.
            ClientError: the CLI failed; any turn not yet sent to it is in ``_carry``.
            CapacityError, PrincipalLimitError: no live slot.
        """
        await self._slots.acquire(self)
        # A fork resumes the conversation it branches off until it has one of its own.
        fork = self.fork_from if self.claude_session_id is None else None
        spec = SessionSpec(
            self.cwd,
            resume=fork.claude_session_id if fork else self.claude_session_id,
            resume_at=fork.assistant_uuid if fork else None,
            fork=fork is not None,
            can_use_tool=self._permissions.ask if self._policy.ask_permissions else None,
            system_prompt_file=system_prompt_file(self.cwd),
            session_key=lambda: self.key,
        )
        # A new CLI runs the launch model; a resumed one the model on its command line,
        # if any (else its conversation's, not known).
        cli_model = self._policy.launch_model if spec.resume is None else self._policy.resume_model
        connected = False
        try:
            async with self._client_factory(spec) as client:
                connected = True
                failure = await self._connected(client, cli_model)
            if failure is not None:
                raise failure
        except ClientError as exc:
            if not connected:
                raise _StartFailedError(str(exc)) from exc
            raise
        finally:
            self.live, self.cli_pid = False, None
            self._slots.release(self)

    async def _connected(self, client: ClaudeClient, cli_model: str | None) -> ClientError | None:
        """Serve turns on a connected client (running ``cli_model``, if known) until the
        session hibernates (``None``) or the client fails (the ``ClientError``, returned
        so it does not travel through a nursery)."""
        self._observer.cli_started(self._session_id or None, client.pid)
        if self.key is None:  # a warm-pool actor, not offered yet
            cli_model = await self._warm_up(client, cli_model)
        self.live, self.cli_pid, self._served = True, client.pid, False
        self.state = "idle"
        # Idle from now: a start that took longer than the idle TTL (a start-up storm)
        # must not hibernate the CLI before the turn that started it is handed over.
        self._idle_since = trio.current_time()
        self._on_idle()  # a waiter for a live slot may take this one's now
        if self._task_status is not None:
            self.started = True
            self._task_status.started(self)
            self._task_status = None
        runner = self._runner = TurnRunner(
            client,
            TurnDeadlines(
                prompt_write_s=self._policy.prompt_write_s,
                first_chunk_s=self._policy.first_chunk_timeout_s,
                stream_idle_s=self._policy.stream_idle_timeout_s,
                interrupt_drain_s=self._policy.interrupt_drain_s,
            ),
            self.fanout,
            self._permissions,
            session_id=self._session_id,
            timeouts=self.timeouts,
            slash_commands=self._policy.slash_commands,
            finish_on_disconnect=self._policy.finish_on_disconnect,
            model=cli_model,
        )
        async with trio.open_nursery() as watch:
            watch.start_soon(self._watch_exit, client)
            try:
                await self._serve(client, runner)
                return None
            except ClientError as exc:
                return exc
            finally:
                self._runner = None
                watch.cancel_scope.cancel()

    async def _warm_up(self, client: ClaudeClient, cli_model: str | None) -> str | None:
        """Before a warm-pool actor is offered, pay what it can of its CLI's first-turn
        cost, touching no conversation: set its model to ``warm_model`` (else to the
        one it runs, if known) and, with ``policy.warm_up``, have the CLI compute its
        context once (``ClaudeClient.warm_up``). Returns the model the CLI runs now. A
        refused model is kept as it was.

        A new CLI's first ``set_model`` takes 25-45 ms, later ones a few, and it takes
        that off the first turn even for the model the CLI was started with (SDK alone,
        fresh CLIs started with ``--model``, first turn's TTFT p50 in two runs of 6:
        after the context alone 136 and 155 ms, after ``set_model`` first 93 and 131).

        Raises:
            ClientError: the CLI is gone, or did not answer within ``prompt_write_s``
                (it may hold half a request: the client is given up).
        """
        with trio.move_on_after(self._policy.prompt_write_s):
            model = self.warm_model or cli_model
            if model is not None:
                try:
                    await client.set_model(model)
                    cli_model = model
                except ModelRefusedError as exc:
                    log.warning("a warm CLI refused model %r: %s", model, exc)
            if self._policy.warm_up:
                await client.warm_up()
            return cli_model
        raise ClientError(f"the warm CLI did not answer within {self._policy.prompt_write_s}s")

    async def _serve(self, client: ClaudeClient, runner: TurnRunner) -> None:
        """Run turns until the session idles out, is evicted, or the client fails.

        Raises:
            ClientError: the client failed; a turn in hand is kept in ``_carry``.
        """
        while True:
            # A turn in hand is kept in _carry until it runs, so whatever happens it is
            # either run by the next client or failed when the actor retires.
            if self._carry is None:
                ttl = math.inf if self.key is None else self._policy.idle_ttl_s
                next_turn = await self._next_turn(ttl)
                if isinstance(next_turn, Envelope):
                    self._carry = next_turn
                elif isinstance(next_turn, CliExited):
                    raise ClientError("the CLI process exited while idle")
                else:
                    reason = {Evict: "evicted", HandOff: "handing off"}.get(type(next_turn), "idle")
                    log.info("session %s %s: hibernating", self.key, reason)
                    return
            if not client.alive:
                raise ClientError("the CLI process exited")
            envelope, self._carry = self._carry, None
            await self._run_turn(runner, envelope)
            if self.one_turn:
                return

    async def _watch_exit(self, client: ClaudeClient) -> None:
        """Notice a CLI that exits while the session is idle, so it is restarted now
        rather than when the next turn finds it dead."""
        await client.wait_exited()
        self._wake(CliExited())

    async def _next_turn(self, ttl: float) -> Envelope | WakeUp:
        """Wait up to ``ttl`` seconds of idleness for a turn whose caller still wants it,
        or until woken (``Evict``, ``CliExited``). A turn that arrives as the actor is
        evicted waits in the mailbox for the next lifetime."""
        assert self._mailbox_receive is not None  # not dormant
        while True:
            self._wake_up = None
            if self._handing_off:  # the turns queued first, then the hand-off
                return self._take_queued() or HandOff()
            with trio.CancelScope(deadline=self._idle_since + ttl) as self._waiting:
                envelope = await self._mailbox_receive.receive()
                self._waiting = None
                if not envelope.cancel_scope.cancel_called:
                    return envelope
                envelope.abandon("interrupted", "cancelled before it started", self.fanout)
                continue
            self._waiting = None
            if self._wake_up is not None:
                return self._wake_up
            # The deadline passed; a turn may have arrived since. Retiring (if that is
            # what the caller does next) happens before any checkpoint.
            return self._take_queued() or IdleExpired()

    def _count_restart(self, exc: ClientError) -> None:
        """Record a client failure; raise SessionFailedError past the restart intensity."""
        now = trio.current_time()
        self.last_error = str(exc)
        self._restart_times.append(now)
        recent = now - self._policy.restart_window_s
        self._restart_times = [t for t in self._restart_times if t >= recent]
        if len(self._restart_times) > self._policy.max_restarts:
            message = (
                f"Claude Code failed {len(self._restart_times)} times within "
                f"{self._policy.restart_window_s}s (last: {exc}); the session is closed"
            )
            self.last_error = message
            self.forgotten = True
            raise SessionFailedError(message) from exc
        self.restarts += 1
        log.warning("session %s: restarting its CLI (resuming): %s", self.key, exc)

    def _retire(self) -> None:
        """Stop accepting turns, synchronously; fail the turns still waiting.

        After this, ``submit_nowait`` raises ``trio.BrokenResourceError``; turns left in
        the mailbox get ``TurnFailed(reason="session_closed")`` and count as dead letters.
        """
        if self.state == "closing":
            return
        self.state = "closing"
        pending = [self._carry] if self._carry is not None else []
        self._carry = None
        while self._mailbox_receive is not None:  # (a dormant actor's is gone, empty)
            try:
                pending.append(self._mailbox_receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        for envelope in pending:
            self.dead_letters += 1
            message = self.last_error or "the session closed"
            envelope.abandon("session_closed", message, self.fanout)
        if self._mailbox_receive is not None:
            self._mailbox_receive.close()
        self.fanout.close()
        self._on_retire(self)

    # -- One turn: the actor's bookkeeping around TurnRunner.run ----------------------

    async def _run_turn(self, runner: TurnRunner, envelope: Envelope) -> None:
        """Run one turn, reporting its events; afterwards the client is ready again.

        Raises:
            ClientError: the CLI failed or was killed; the turn has been reported failed
                (or, if its prompt never reached the CLI, is carried to the next client).
        """
        self.state, self._current, self._served = "busy", envelope, True
        started_at = trio.current_time()
        session_id_var.set(self._session_id)
        turn_id_var.set(envelope.turn.turn_id)
        outcome: SessionEvent | None = None
        try:
            # The turn's model, else the session's: a resumed CLI is switched to it.
            outcome = await runner.run(envelope, envelope.turn.model or self.model)
        except trio.Cancelled:
            outcome = envelope.abandon("session_closed", self.closing_reason, self.fanout)
            raise
        except CliWedgedError as exc:
            outcome = exc.outcome  # reported before the CLI was given up
            raise
        except ClientError as exc:
            if not envelope.started:
                self._carry = envelope
            else:
                message = f"Claude Code failed: {exc}"
                outcome = envelope.abandon("cli_error", message, self.fanout)
            raise
        except Exception as exc:
            outcome = envelope.abandon("cli_error", f"internal error: {exc!r}", self.fanout)
            raise
        finally:
            self._current = None
            self.claude_session_id = runner.claude_session_id or self.claude_session_id
            if self.claude_session_id is not None:
                self.fork_from = None  # it has a conversation of its own now
            self.model = runner.model or self.model
            self.turns += isinstance(outcome, TurnCompleted)
            self._record(envelope, outcome, started_at)
            self.last_active_at = time.time()
            self._idle_since = trio.current_time()
            if self.state == "busy":
                self.state = "idle"
            self._on_idle()

    def _record(self, envelope: Envelope, outcome: SessionEvent | None, started_at: float) -> None:
        """Tell the observer how a turn ended (nothing if it was reported already)."""
        if isinstance(outcome, TurnCompleted | TurnFailed):
            self._observer.turn_ended(
                TurnRecord(
                    self._session_id,
                    envelope.turn.turn_id,
                    outcome,
                    envelope.queued_at,
                    started_at,
                    envelope.first_output_at,
                    trio.current_time(),
                    None if self.one_turn else self.record(),
                )
            )

    def record(self) -> SessionRecord:
        """What it takes to resume this session later. Not a checkpoint."""
        assert self.key is not None
        return SessionRecord(
            self.key,
            self.cwd,
            self.claude_session_id,
            self.turns,
            self.created_at,
            self.last_active_at,
            self.model,
        )

    def restore(self, record: SessionRecord) -> None:
        """Continue a session known from before (e.g. a previous server run): its next
        CLI resumes ``record.claude_session_id``. Not a checkpoint."""
        self.claude_session_id = record.claude_session_id
        self.model = record.model or self.model
        self.turns = record.turns
        self.created_at = record.created_at
        self.last_active_at = record.last_active_at

    @property
    def _session_id(self) -> str:
        return "" if self.key is None else self.key.session_id
