"""SessionActor: one task that owns one Claude Code client and runs its session's turns."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import trio

from ._client import (
    AssistantText,
    ClaudeClient,
    ClientError,
    ClientFactory,
    ClientMessage,
    SessionInit,
    SessionSpec,
    StreamEvent,
    ToolCall,
    ToolOutput,
    TurnResult,
)
from ._types import (
    FailureReason,
    SessionEvent,
    SessionKey,
    TextDelta,
    ThinkingDelta,
    ToolResult,
    ToolUse,
    Turn,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
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


@dataclass(frozen=True, slots=True)
class ActorTimeouts:
    """The limits an actor enforces itself, in seconds.

    Args:
        idle_ttl_s: an actor with no turn for this long closes its client and exits.
        interrupt_drain_s: after interrupting a turn, how long the CLI has to finish it
            before the client is considered wedged and closed.
    """

    idle_ttl_s: float
    interrupt_drain_s: float


class SessionActor:
    """Runs the turns of one session, one at a time, in arrival order.

    The actor is one task (``run``): it opens its client, serves envelopes from its
    bounded mailbox, and closes the client when it stops. The client never leaves this
    task. Nothing else touches the client; other tasks read the public attributes, which
    are plain snapshots of the actor's state.

    Attributes:
        key: the session this actor serves.
        state: ``starting``, ``idle``, ``busy`` or ``closing``.
        cli_pid: the CLI's process id once started (``None`` for fake clients).
        claude_session_id: the conversation id the CLI reports, once known.
        turns: how many turns have completed.
        created_at / last_active_at: wall-clock times (seconds since the epoch).
    """

    def __init__(
        self,
        key: SessionKey,
        spec: SessionSpec,
        *,
        client_factory: ClientFactory,
        timeouts: ActorTimeouts,
        mailbox_size: int,
        one_turn: bool = False,
        on_retire: Callable[[SessionActor], None] = lambda actor: None,
    ) -> None:
        self.key = key
        self.spec = spec
        self.one_turn = one_turn
        self.state: ActorState = "starting"
        self.started = False  # the client connected and ``run`` reported started
        self.cli_pid: int | None = None
        self.claude_session_id: str | None = spec.resume
        self.turns = 0
        self.dead_letters = 0
        self.created_at = self.last_active_at = time.time()
        self._client_factory = client_factory
        self._timeouts = timeouts
        self._on_retire = on_retire
        self._mailbox_send, self._mailbox_receive = trio.open_memory_channel[Envelope](mailbox_size)
        self._idle_since = trio.current_time()
        self._in_flight = False  # a query was sent and its TurnResult not yet read

    # -- Called by other tasks (never checkpoints) ------------------------------------

    def submit_nowait(self, envelope: Envelope) -> None:
        """Put a turn in the mailbox. Not a checkpoint.

        Raises:
            trio.WouldBlock: the mailbox is full.
            trio.BrokenResourceError: the actor has retired; use another actor.
        """
        self._mailbox_send.send_nowait(envelope)

    @property
    def mailbox_depth(self) -> int:
        """Turns waiting in the mailbox (not counting the running one)."""
        return self._mailbox_send.statistics().current_buffer_used

    @property
    def idle_deadline(self) -> float | None:
        """``trio.current_time()`` at which an idle actor expires, or ``None`` if busy."""
        if self.state != "idle":
            return None
        return self._idle_since + self._timeouts.idle_ttl_s

    def seconds_until_idle_expiry(self) -> int | None:
        """Whole seconds (at least 1) until this idle actor expires, or ``None`` if busy."""
        deadline = self.idle_deadline
        if deadline is None:
            return None
        return max(1, math.ceil(deadline - trio.current_time()))

    # -- The actor task ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[SessionActor]) -> None:
        """Open the client, report started, and serve turns until idle expiry.

        Follows the nursery start protocol: ``started`` is called once the client is
        connected. Returns after idle expiry, or after one turn for one-turn actors.

        Raises:
            ClientError: the CLI could not be started, or died; turns waiting in the
                mailbox then get ``TurnFailed(reason="session_closed")``.

        If cancelled (supervisor shutdown), the running turn gets
        ``TurnFailed(reason="session_closed")`` and the client is closed.
        """
        try:
            async with self._client_factory(self.spec) as client:
                self.cli_pid = client.pid
                self.state = "idle"
                self.started = True
                task_status.started(self)
                await self._serve(client)
        finally:
            self._retire()

    async def _serve(self, client: ClaudeClient) -> None:
        while (envelope := await self._next_envelope()) is not None:
            await self._run_turn(client, envelope)
            if self.one_turn:
                return

    async def _next_envelope(self) -> Envelope | None:
        """Wait for the next turn that its caller still wants; ``None`` on idle expiry."""
        while True:
            with trio.move_on_at(self._idle_since + self._timeouts.idle_ttl_s):
                envelope = await self._mailbox_receive.receive()
                if not envelope.cancel_scope.cancel_called:
                    return envelope
                self._abandon(envelope, "interrupted", "cancelled before it started")
                continue
            # The deadline passed. A turn may have been put in the mailbox since; once
            # the actor is retired (synchronously, below) no new turn can arrive.
            try:
                return self._mailbox_receive.receive_nowait()
            except trio.WouldBlock:
                log.info("session %s idle for %ss: closing", self.key, self._timeouts.idle_ttl_s)
                self._retire()
                return None

    def _retire(self) -> None:
        """Stop accepting turns, synchronously; fail the turns still waiting.

        After this, ``submit_nowait`` raises ``trio.BrokenResourceError``; turns left in
        the mailbox get ``TurnFailed(reason="session_closed")`` and count as dead letters.
        """
        if self.state == "closing":
            return
        self.state = "closing"
        while True:
            try:
                envelope = self._mailbox_receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            self.dead_letters += 1
            self._abandon(envelope, "session_closed", "the session closed before this turn ran")
        self._mailbox_receive.close()
        self._on_retire(self)

    @staticmethod
    def _abandon(envelope: Envelope, reason: FailureReason, message: str) -> None:
        """Tell the caller (if still listening) how the turn ended, and close its channel."""
        with (
            envelope.reply,
            contextlib.suppress(
                trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
            ),
        ):
            envelope.reply.send_nowait(TurnFailed(envelope.turn.turn_id, reason, message))

    # -- One turn ---------------------------------------------------------------------

    async def _run_turn(self, client: ClaudeClient, envelope: Envelope) -> None:
        """Run one turn, reporting its events; afterwards the client is ready again."""
        self.state = "busy"
        delivered = False
        try:
            with envelope.cancel_scope:
                try:
                    outcome = await self._converse(client, envelope)
                    if isinstance(outcome, TurnCompleted):
                        self.turns += 1
                    await envelope.reply.send(outcome)
                    delivered = True
                except trio.BrokenResourceError:
                    envelope.cancel_scope.cancel()  # the caller stopped listening
            if self._in_flight:
                await self._interrupt_and_drain(client)
            if envelope.cancel_scope.cancel_called and not delivered:
                log.info("session %s: turn %s interrupted", self.key, envelope.turn.turn_id)
                self._abandon(envelope, "interrupted", "the turn was interrupted")
        except trio.Cancelled:
            self._abandon(envelope, "session_closed", "the server is shutting down")
            raise
        except ClientError as exc:
            self._abandon(envelope, "cli_error", f"Claude Code failed: {exc}")
            raise
        finally:
            envelope.reply.close()
            self.last_active_at = time.time()
            self._idle_since = trio.current_time()
            if self.state == "busy":
                self.state = "idle"

    async def _converse(self, client: ClaudeClient, envelope: Envelope) -> SessionEvent:
        """Send the prompt and relay the CLI's messages as events until its result."""
        turn = envelope.turn
        await envelope.reply.send(TurnStarted(turn.turn_id, self.key.session_id))
        # A half-written prompt would corrupt the CLI's input stream: never cancel it.
        with trio.CancelScope(shield=True):
            await client.query(turn.prompt)
            self._in_flight = True
        translator = _Translator(turn.turn_id)
        while True:
            message = await client.receive()
            if isinstance(message, TurnResult):
                self._in_flight = False
                self.claude_session_id = message.claude_session_id
                return translator.finish(message)
            if isinstance(message, SessionInit):
                self.claude_session_id = message.claude_session_id
            for event in translator.translate(message):
                await envelope.reply.send(event)

    async def _interrupt_and_drain(self, client: ClaudeClient) -> None:
        """Interrupt the CLI's running turn and read it to its end, so the next turn
        starts clean. Shielded, but bounded by ``interrupt_drain_s``.

        Raises:
            ClientError: the CLI did not finish the turn in time (it is wedged).
        """
        with trio.move_on_after(self._timeouts.interrupt_drain_s, shield=True):
            await client.interrupt()
            while not isinstance(await client.receive(), TurnResult):
                pass
            self._in_flight = False
            return
        raise ClientError(
            f"the CLI did not end an interrupted turn within {self._timeouts.interrupt_drain_s}s"
        )


class _Translator:
    """Turns the CLI's messages for one turn into SessionEvents.

    Text and thinking come from the raw stream events (token by token). A complete text
    block that was never streamed (the CLI writes some messages itself, e.g. API errors)
    is sent as one delta, so no text is lost.
    """

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self.block_index = -1
        self.streamed_text_blocks = 0  # streamed text blocks not yet matched to AssistantText
        self.stop_reason = "end_turn"
        self.model: str | None = None

    def translate(self, message: ClientMessage) -> list[SessionEvent]:
        match message:
            case StreamEvent(event=event):
                return self._stream_event(event)
            case AssistantText(text=text):
                if self.streamed_text_blocks:
                    self.streamed_text_blocks -= 1
                    return []
                self.block_index += 1
                return [TextDelta(self.turn_id, text, self.block_index)]
            case ToolCall(id=id_, name=name, input=input_):
                return [ToolUse(self.turn_id, id_, name, input_)]
            case ToolOutput(tool_use_id=tool_use_id, content=content, is_error=is_error):
                return [ToolResult(self.turn_id, tool_use_id, content, is_error)]
            case _:
                return []

    def _stream_event(self, event: dict) -> list[SessionEvent]:
        kind = event.get("type")
        if kind == "message_start":
            self.model = (event.get("message") or {}).get("model", self.model)
        elif kind == "content_block_start":
            self.block_index += 1
            if (event.get("content_block") or {}).get("type") == "text":
                self.streamed_text_blocks += 1
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [TextDelta(self.turn_id, delta["text"], self.block_index)]
            if delta.get("type") == "thinking_delta" and delta.get("thinking"):
                return [ThinkingDelta(self.turn_id, delta["thinking"], self.block_index)]
        elif kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
        return []

    def finish(self, result: TurnResult) -> TurnCompleted | TurnFailed:
        if result.is_error:
            return TurnFailed(
                self.turn_id,
                "upstream_error",
                result.result or f"Claude Code: {result.subtype}",
                upstream_status=result.api_error_status,
            )
        return TurnCompleted(
            turn_id=self.turn_id,
            stop_reason=self.stop_reason,
            usage=Usage.from_dict(result.usage),
            total_cost_usd=result.total_cost_usd,
            claude_session_id=result.claude_session_id,
            duration_ms=result.duration_ms,
            model=self.model,
        )
