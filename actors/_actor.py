"""SessionActor: one task that owns a session's Claude Code client and runs its turns."""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import trio

from ._client import ClaudeClient, ClientError, ClientFactory, SessionInit, SessionSpec, TurnResult
from ._fanout import FanOut
from ._logcontext import session_id_var, turn_id_var
from ._prompt import as_user_text
from ._translate import Translator
from ._types import (
    FailureReason,
    Observer,
    PermissionDecision,
    PermissionRequest,
    RetryLaterError,
    SessionEvent,
    SessionKey,
    SessionRecord,
    TextDelta,
    ThinkingDelta,
    Turn,
    TurnCompleted,
    TurnFailed,
    TurnRecord,
    TurnStarted,
)

log = logging.getLogger(__name__)

ActorState = Literal["starting", "idle", "busy", "closing"]


@dataclass(eq=False)
class Envelope:
    """A turn in a mailbox: the turn, where its events go, and how its caller cancels it.

    The caller cancels ``cancel_scope`` (synchronously) when it goes away; the actor then
    skips the turn if it has not started, or interrupts and drains it if it has.
    """

    turn: Turn
    reply: trio.MemorySendChannel[SessionEvent]
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    queued_at: float = field(default_factory=trio.current_time)
    first_output_at: float | None = None
    started: bool = False  # the prompt was sent to the CLI
    detached: bool = False  # the caller left; the turn runs on (on_disconnect="finish")
    finished: bool = False  # the final event was delivered (or the caller was gone)
    interrupt_reason: str = "the client went away"


@dataclass(frozen=True, slots=True)
class ActorPolicy:
    """What an actor enforces itself. Times in seconds.

    Args:
        idle_ttl_s: a live session with no turn for this long hibernates (closes its CLI).
        retention_s: a hibernated session with no turn for this long is forgotten.
        first_chunk_timeout_s: no message at all from the CLI this long after a prompt:
            the CLI is wedged; the turn fails, the CLI is killed and restarted (resuming).
        stream_idle_timeout_s: after the first message, none for this long: the turn
            fails and is interrupted and drained; the CLI is kept.
        interrupt_drain_s: how long an interrupted turn may take to end before the CLI
            counts as wedged.
        max_restarts, restart_window_s: more than ``max_restarts`` client restarts within
            ``restart_window_s`` close the session.
        finish_on_disconnect: when a caller goes away mid-turn, let the turn finish (its
            answer stays in the conversation) instead of interrupting it.
        ask_permissions: route Claude Code's tool-permission questions to the session's
            listeners as ``PermissionRequest``s; with no listener, or no answer within
            ``permission_timeout_s``, the tool is denied. Waiting for an answer does not
            count towards ``stream_idle_timeout_s``.
        slash_commands: Claude Code slash commands a prompt may run (names without the
            ``/``); a prompt starting with any other command is sent as plain text.
    """

    idle_ttl_s: float = 900.0
    retention_s: float = 86_400.0
    first_chunk_timeout_s: float = 10.0
    stream_idle_timeout_s: float = 120.0
    interrupt_drain_s: float = 10.0
    max_restarts: int = 3
    restart_window_s: float = 60.0
    finish_on_disconnect: bool = False
    ask_permissions: bool = False
    permission_timeout_s: float = 60.0
    slash_commands: frozenset[str] = frozenset()


@dataclass(eq=False)
class _PendingPermission:
    request: PermissionRequest
    answered: trio.Event = field(default_factory=trio.Event)
    decision: PermissionDecision = field(default_factory=lambda: PermissionDecision(False))


class LiveSlots(Protocol):
    """Where an actor gets permission to run a CLI process (the supervisor)."""

    async def acquire(self, actor: SessionActor) -> None:
        """Take a live slot, evicting an idle session if needed. Raises CapacityError
        or PrincipalLimitError."""
        ...

    def release(self, actor: SessionActor) -> None: ...


class SessionFailedError(Exception):
    """The session's CLI failed too often (restart intensity exceeded); it is closed."""


class SessionActor:
    """Runs the turns of one session, one at a time, in arrival order.

    The actor is one task (``run``) that lives as long as the session, through any
    number of CLI lifetimes: it opens a client, serves turns from its bounded mailbox,
    and closes the client when the session hibernates (idle), is evicted, or the CLI
    fails (then it reopens one at once, resuming the conversation). A client never
    leaves this task. Other tasks only read the public attributes (plain snapshots) and
    call the ``*_nowait``/sync methods.

    Attributes:
        key: the session (``None`` while it is an unassigned warm-pool actor).
        state: ``starting``, ``idle``, ``busy`` or ``closing``.
        live: a CLI process is running for this session (else it is hibernated).
        cli_pid, claude_session_id, turns, restarts, last_error, timeouts: for stats.
        created_at, last_active_at: wall-clock times (seconds since the epoch).
    """

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
        self.cli_pid: int | None = None
        self.claude_session_id: str | None = None
        self.turns = 0
        self.restarts = 0
        self.dead_letters = 0
        self.last_error: str | None = None
        self.timeouts: collections.Counter[str] = collections.Counter()
        self.created_at = self.last_active_at = time.time()
        self.fanout = FanOut(fanout_buffer)
        self.scope = trio.CancelScope()  # cancelled to close the session (DELETE)
        self.done = trio.Event()  # set once the actor's task has ended
        self.closing_reason = "the server is shutting down"
        self.forgotten = False  # ended for good (retention, failures), not just stopped
        self._client_factory = client_factory
        self._policy = policy
        self._slots = slots
        self._on_retire = on_retire
        self._on_idle = on_idle
        self._observer = observer or Observer()
        self._mailbox_send, self._mailbox_receive = trio.open_memory_channel[Envelope](mailbox_size)
        self._idle_since = trio.current_time()
        self._idle_scope: trio.CancelScope | None = None
        self._evicted = False
        self._current: Envelope | None = None
        self._carry: Envelope | None = None  # a turn to run on the next client
        self._in_flight = False  # a prompt was sent and its TurnResult not yet read
        self._wedged = False  # the CLI was killed: this client is finished
        self._connected = False  # this CLI lifetime's client did connect
        self._served = False  # this CLI lifetime ran a turn (see ``evictable``)
        self._restart_times: collections.deque[float] = collections.deque()
        self._permissions: dict[str, _PendingPermission] = {}
        self._asked = False  # a permission question was pending since the deadline was set

    # -- Called by other tasks (never checkpoints) ------------------------------------

    def submit_nowait(self, envelope: Envelope) -> None:
        """Put a turn in the mailbox. Not a checkpoint.

        Raises:
            trio.WouldBlock: the mailbox is full.
            trio.BrokenResourceError: the actor has retired; use another actor.
        """
        self._mailbox_send.send_nowait(envelope)

    def adopt(self, key: SessionKey, *, one_turn: bool = False) -> None:
        """Make this warm-pool actor the actor of session ``key``. Not a checkpoint."""
        self.key, self.one_turn = key, one_turn
        self.created_at = self.last_active_at = time.time()
        self._idle_since = trio.current_time()
        self._served = False  # not evictable before the turn that adopted it

    def interrupt(self) -> bool:
        """Interrupt the running turn, if any; its caller gets ``TurnFailed(interrupted)``.
        Returns whether a turn was running. Not a checkpoint."""
        if self._current is None:
            return False
        self._current.interrupt_reason = "interrupted on request"
        self._current.cancel_scope.cancel()
        return True

    def evict(self) -> bool:
        """Hibernate now if idle and live (to free a live slot). Returns whether it will.
        Not a checkpoint."""
        if not self.evictable:
            return False
        self._evicted = True
        self._idle_scope.cancel()  # type: ignore[union-attr]
        return True

    def answer_permission(self, request_id: str, allow: bool, message: str = "") -> bool:
        """Answer a pending ``PermissionRequest``. Returns False if there is none with
        that id (answered already, timed out, or never asked). Not a checkpoint."""
        pending = self._permissions.get(request_id)
        if pending is None or pending.answered.is_set():
            return False
        pending.decision = PermissionDecision(
            allow, message or ("approved" if allow else "the user denied this tool use")
        )
        pending.answered.set()
        return True

    def pending_permissions(self) -> list[PermissionRequest]:
        """Questions not answered yet, oldest first (replayed to a new listener)."""
        return [pending.request for pending in self._permissions.values()]

    async def _ask_permission(
        self, tool_name: str, tool_input: dict[str, Any]
    ) -> PermissionDecision:
        """Ask the session's listeners whether Claude Code may use a tool; wait up to
        ``permission_timeout_s`` for ``answer_permission``. Called from the SDK's task
        group, in this actor's client lifetime."""
        if not len(self.fanout):
            return PermissionDecision(False, "no client is connected to approve tool use")
        turn_id = "" if self._current is None else self._current.turn.turn_id
        request = PermissionRequest(f"perm_{uuid.uuid4().hex[:20]}", turn_id, tool_name, tool_input)
        pending = self._permissions[request.request_id] = _PendingPermission(request)
        self._asked = True
        self.fanout.publish(request)
        try:
            with trio.move_on_after(self._policy.permission_timeout_s):
                await pending.answered.wait()
                return pending.decision
            seconds = self._policy.permission_timeout_s
            return PermissionDecision(False, f"no answer to the permission request in {seconds}s")
        finally:
            del self._permissions[request.request_id]
            self._asked = True  # the answer may land on the same instant as a deadline

    @property
    def evictable(self) -> bool:
        """Whether hibernating this actor would free a slot no turn is about to use: it
        is live, waiting for a turn with none queued, and (for a session) has served a
        turn since it connected or was adopted, since its first turn is on its way."""
        return (
            self.live
            and self.state == "idle"
            and self._idle_scope is not None
            and not self.mailbox_depth
            and (self.key is None or self._served)
        )

    @property
    def mailbox_depth(self) -> int:
        """Turns waiting in the mailbox (not counting the running one)."""
        return self._mailbox_send.statistics().current_buffer_used

    def seconds_until_idle_expiry(self) -> int | None:
        """Whole seconds (at least 1) until this live idle session hibernates, else None."""
        if not self.evictable:
            return None
        deadline = self._idle_since + self._policy.idle_ttl_s
        return max(1, math.ceil(deadline - trio.current_time()))

    # -- The actor task ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[SessionActor]) -> None:
        """Serve the session until it is forgotten (retention), closed, or cancelled.

        Follows the nursery start protocol: ``started`` is called once the first client
        is connected.

        Raises:
            ClientError: the first client could not be started.
            CapacityError, PrincipalLimitError: no live slot for the first client.
            SessionFailedError: the CLI failed more often than the restart intensity.

        If cancelled (supervisor shutdown), the running turn gets
        ``TurnFailed(reason="session_closed")`` and the client is closed.
        """
        try:
            while True:
                try:
                    await self._live_period(task_status)
                except ClientError as exc:
                    if not self.started:
                        raise
                    self._count_restart(exc)
                    if not self._connected and self.claude_session_id is not None:
                        # The CLI would not even start resuming: the transcript is gone
                        # or broken. Go on with a new conversation rather than fail
                        # every turn; say so in last_error.
                        log.warning(
                            "session %s: could not resume %s; starting afresh",
                            self.key,
                            self.claude_session_id,
                        )
                        self.last_error = (
                            f"conversation {self.claude_session_id} could not be resumed "
                            f"({exc}); a new one was started"
                        )
                        self.claude_session_id = None
                    continue
                except RetryLaterError as exc:  # no live slot (or not within its key's share)
                    if not self.started:
                        raise
                    if self._carry is not None:
                        self._abandon(self._carry, "overloaded", str(exc))
                        self._carry = None
                if self.one_turn or self.key is None:
                    return
                # Hibernated: no CLI; wake on the next turn or be forgotten.
                self._carry = await self._next_envelope(self._policy.retention_s)
                if self._carry is None:
                    log.info("session %s forgotten after retention", self.key)
                    self.forgotten = True
                    return
        finally:
            self._retire()

    async def _live_period(self, task_status: trio.TaskStatus[SessionActor]) -> None:
        """One CLI lifetime: open a client (resuming), serve turns, close it when idle.

        Raises:
            ClientError: the CLI failed; any turn not yet sent to it is in ``_carry``.
        """
        await self._slots.acquire(self)
        self._connected = False
        try:
            spec = SessionSpec(
                self.cwd,
                resume=self.claude_session_id,
                can_use_tool=self._ask_permission if self._policy.ask_permissions else None,
            )
            async with self._client_factory(spec) as client:
                self._connected = True
                self._observer.cli_started(self._session_id or None, client.pid)
                self.live, self.cli_pid, self._wedged = True, client.pid, False
                self._served = False
                self.state = "idle"
                self._on_idle()  # a waiter for a live slot may take this one's now
                if not self.started:
                    self.started = True
                    task_status.started(self)
                async with trio.open_nursery() as watch:
                    watch.start_soon(self._watch_exit, client)
                    failure = await self._serve(client)
                    watch.cancel_scope.cancel()
                if failure is not None:
                    raise failure
        finally:
            self.live, self.cli_pid = False, None
            self._slots.release(self)

    async def _serve(self, client: ClaudeClient) -> ClientError | None:
        """Run turns on ``client`` until the session idles out (``None``) or the client
        fails (the ``ClientError``, returned so it does not travel through a nursery)."""
        try:
            while True:
                # A turn in hand is kept in _carry until it runs, so whatever happens it
                # is either run by the next client or failed when the actor retires.
                if self._carry is None:
                    ttl = math.inf if self.key is None else self._policy.idle_ttl_s
                    self._carry = await self._next_envelope(ttl)
                if not client.alive:
                    raise ClientError("the CLI process exited while idle")
                if self._carry is None:
                    log.info("session %s idle: hibernating", self.key)
                    return None
                envelope, self._carry = self._carry, None
                await self._run_turn(client, envelope)
                if self.one_turn:
                    return None
        except ClientError as exc:
            return exc

    async def _watch_exit(self, client: ClaudeClient) -> None:
        """Notice a CLI that exits while the session is idle, so it is restarted now
        rather than when the next turn finds it dead."""
        await client.wait_exited()
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    async def _next_envelope(self, ttl: float) -> Envelope | None:
        """Wait up to ``ttl`` seconds of idleness for a turn whose caller still wants it.

        Returns ``None`` when the time is up or the actor is evicted.
        """
        self._evicted = False
        while True:
            with trio.CancelScope(deadline=self._idle_since + ttl) as self._idle_scope:
                envelope = await self._mailbox_receive.receive()
                if not envelope.cancel_scope.cancel_called:
                    self._idle_scope = None
                    return envelope
                self._abandon(envelope, "interrupted", "cancelled before it started")
                continue
            self._idle_scope = None
            if self._evicted:
                return None  # a turn that just arrived waits in the mailbox
            # The deadline passed; a turn may have arrived since. Retiring (if that is
            # what the caller does next) happens before any checkpoint.
            try:
                return self._mailbox_receive.receive_nowait()
            except trio.WouldBlock:
                return None

    def _count_restart(self, exc: ClientError) -> None:
        """Record a client failure; raise SessionFailedError past the restart intensity."""
        now = trio.current_time()
        self.last_error = str(exc)
        self._restart_times.append(now)
        while self._restart_times[0] < now - self._policy.restart_window_s:
            self._restart_times.popleft()
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
        while True:
            try:
                pending.append(self._mailbox_receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        for envelope in pending:
            self.dead_letters += 1
            self._abandon(envelope, "session_closed", self.last_error or "the session closed")
        self._mailbox_receive.close()
        self.fanout.close()
        self._on_retire(self)

    # -- One turn ---------------------------------------------------------------------

    async def _run_turn(self, client: ClaudeClient, envelope: Envelope) -> None:
        """Run one turn, reporting its events; afterwards the client is ready again.

        Raises:
            ClientError: the CLI failed or was killed; the turn has been reported failed
                (or, if its prompt never reached the CLI, is carried to the next client).
        """
        self.state, self._current, self._served = "busy", envelope, True
        started_at = trio.current_time()
        session_id_var.set(self._session_id)
        turn_id_var.set(envelope.turn.turn_id)
        try:
            outcome: SessionEvent | None = None
            with envelope.cancel_scope:
                outcome = await self._converse(client, envelope)
            if outcome is None:  # the caller left, or an interrupt was asked for
                outcome = TurnFailed(
                    envelope.turn.turn_id, "interrupted", envelope.interrupt_reason
                )
            await self._finish(envelope, outcome)
            self._current = None  # over for its caller; any drain below is ours
            self._record(envelope, outcome, started_at)
            if self._wedged:
                raise ClientError("the CLI was killed after sending nothing")
            if self._in_flight:
                await self._interrupt_and_drain(client)
        except trio.Cancelled:
            failed = self._abandon(envelope, "session_closed", self.closing_reason)
            self._record(envelope, failed, started_at)
            raise
        except ClientError as exc:
            if not envelope.started:
                self._carry = envelope
            else:
                failed = self._abandon(envelope, "cli_error", f"Claude Code failed: {exc}")
                self._record(envelope, failed, started_at)
            raise
        except Exception as exc:
            failed = self._abandon(envelope, "cli_error", f"internal error: {exc!r}")
            self._record(envelope, failed, started_at)
            raise
        finally:
            self._current = None
            self.last_active_at = time.time()
            self._idle_since = trio.current_time()
            if self.state == "busy":
                self.state = "idle"
            self._on_idle()

    async def _converse(self, client: ClaudeClient, envelope: Envelope) -> SessionEvent:
        """Send the prompt and relay the CLI's messages until its result or a timeout.

        The first message must come within ``first_chunk_timeout_s`` of the prompt, each
        later one within ``stream_idle_timeout_s`` of the previous (time spent waiting
        on a slow caller does not count).
        """
        turn = envelope.turn
        # A half-written prompt would corrupt the CLI's input stream: never cancel it.
        with trio.CancelScope(shield=True):
            await client.query(as_user_text(turn.prompt, self._policy.slash_commands))
            envelope.started = self._in_flight = True
        await self._emit(envelope, TurnStarted(turn.turn_id, self._session_id))
        translator = Translator(turn.turn_id)
        deadline = trio.current_time() + self._policy.first_chunk_timeout_s
        first = True
        while True:
            message = None
            with trio.move_on_at(deadline):
                message = await client.receive()
            if message is None and (self._permissions or self._asked):
                # Claude Code is (or just was) waiting for a person to approve a tool.
                self._asked = False
                deadline = trio.current_time() + self._policy.stream_idle_timeout_s
                continue
            if message is None:
                return self._timed_out(client, turn.turn_id, first)
            first = self._asked = False
            if isinstance(message, TurnResult):
                self._in_flight = False
                self.claude_session_id = message.claude_session_id
                outcome = translator.finish(message)
                if isinstance(outcome, TurnCompleted):
                    self.turns += 1
                return outcome
            if isinstance(message, SessionInit):
                self.claude_session_id = message.claude_session_id
            for event in translator.translate(message):
                await self._emit(envelope, event)
            deadline = trio.current_time() + self._policy.stream_idle_timeout_s

    def _timed_out(self, client: ClaudeClient, turn_id: str, first: bool) -> TurnFailed:
        if first:
            self.timeouts["first_chunk"] += 1
            seconds = self._policy.first_chunk_timeout_s
            log.warning("session %s: no message within %ss: killing its CLI", self.key, seconds)
            client.abort()
            self._wedged = True
            message = f"Claude Code sent nothing within {seconds}s; its process was restarted"
        else:
            self.timeouts["stream_idle"] += 1
            seconds = self._policy.stream_idle_timeout_s
            message = f"Claude Code sent nothing for {seconds}s; the turn was interrupted"
        return TurnFailed(turn_id, "timeout", message)

    async def _emit(self, envelope: Envelope, event: SessionEvent) -> None:
        """Publish to listeners and send to the turn's caller (waiting if it is slow)."""
        if envelope.first_output_at is None and isinstance(event, TextDelta | ThinkingDelta):
            envelope.first_output_at = trio.current_time()
        self.fanout.publish(event)
        if envelope.detached:
            return
        try:
            await envelope.reply.send(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self._policy.finish_on_disconnect:
                envelope.detached = True
            else:
                envelope.cancel_scope.cancel()

    async def _finish(self, envelope: Envelope, outcome: SessionEvent) -> None:
        """Deliver the turn's final event, then close the caller's channel."""
        self.fanout.publish(outcome)
        envelope.finished = True
        with envelope.reply:
            if not envelope.detached:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await envelope.reply.send(outcome)

    async def _interrupt_and_drain(self, client: ClaudeClient) -> None:
        """Interrupt the CLI's running turn and read it to its end, so the next turn
        starts clean. Shielded, but bounded by ``interrupt_drain_s``.

        Raises:
            ClientError: the CLI did not finish the turn in time (it is wedged).
        """
        with trio.move_on_after(self._policy.interrupt_drain_s, shield=True):
            await client.interrupt()
            while not isinstance(await client.receive(), TurnResult):
                pass
            self._in_flight = False
            return
        client.abort()
        raise ClientError(
            f"the CLI did not end an interrupted turn within {self._policy.interrupt_drain_s}s"
        )

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
        )

    def restore(self, record: SessionRecord) -> None:
        """Continue a session known from before (e.g. a previous server run): its next
        CLI resumes ``record.claude_session_id``. Not a checkpoint."""
        self.claude_session_id = record.claude_session_id
        self.turns = record.turns
        self.created_at = record.created_at
        self.last_active_at = record.last_active_at

    def _abandon(
        self, envelope: Envelope, reason: FailureReason, message: str
    ) -> TurnFailed | None:
        """Tell the caller (if still listening) how the turn ended; close its channel.
        Returns the failure, or ``None`` if the turn had already ended."""
        if envelope.finished:
            return None
        envelope.finished = True
        failed = TurnFailed(envelope.turn.turn_id, reason, message)
        if envelope.started:
            self.fanout.publish(failed)
        with (
            envelope.reply,
            contextlib.suppress(
                trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
            ),
        ):
            envelope.reply.send_nowait(failed)
        return failed

    @property
    def _session_id(self) -> str:
        return "" if self.key is None else self.key.session_id
