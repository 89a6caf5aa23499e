"""One turn on a connected client: the envelope that carries it, and the runner that
sends its prompt, relays the CLI's messages as ``SessionEvent``s under the turn's
deadlines, and leaves the client ready for the next turn."""

from __future__ import annotations

import collections
import contextlib
import logging
import math
from collections.abc import Collection
from dataclasses import dataclass, field

import trio

from ._client import ClaudeClient, ClientError, ModelRefusedError, SessionInit, TurnResult
from ._fanout import FanOut
from ._permissions import PermissionBroker
from ._prompt import as_user_text
from ._translate import Translator
from ._types import (
    FailureReason,
    SessionEvent,
    TextDelta,
    ThinkingDelta,
    Turn,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
)

log = logging.getLogger(__name__)


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
    started: bool = False  # the prompt went to the CLI: the turn is never re-run
    detached: bool = False  # the caller left; the turn runs on (on_disconnect="finish")
    finished: bool = False  # the final event was delivered (or the caller was gone)
    interrupt_reason: str = "the client went away"

    def offer(self, event: SessionEvent, fanout: FanOut, *, finish_on_disconnect: bool) -> bool:
        """Publish ``event`` to listeners and hand it to the caller if its buffer has
        room. Returns False if it has none: then ``deliver`` it. A caller that is gone
        cancels the turn, or detaches it with ``finish_on_disconnect``. Not a
        checkpoint (while the caller keeps up, the relay checkpoints only at each
        receive from the CLI: a scheduler pass less per delta)."""
        if self.first_output_at is None and isinstance(event, TextDelta | ThinkingDelta):
            self.first_output_at = trio.current_time()
        fanout.publish(event)
        if self.detached:
            return True
        try:
            self.reply.send_nowait(event)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._caller_gone(finish_on_disconnect)
        return True

    async def deliver(self, event: SessionEvent, *, finish_on_disconnect: bool) -> None:
        """Send ``event`` to a slow caller, waiting for room in its buffer."""
        try:
            await self.reply.send(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._caller_gone(finish_on_disconnect)

    def _caller_gone(self, finish_on_disconnect: bool) -> None:
        if finish_on_disconnect:
            self.detached = True
        else:
            self.cancel_scope.cancel()

    async def finish(self, outcome: SessionEvent, fanout: FanOut) -> None:
        """Deliver the turn's final event, then close the caller's channel."""
        fanout.publish(outcome)
        self.finished = True
        with self.reply:
            if not self.detached:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.reply.send(outcome)

    def abandon(self, reason: FailureReason, message: str, fanout: FanOut) -> TurnFailed | None:
        """Tell the caller (if still listening) how the turn ended, without waiting; close
        its channel. Returns the failure, or ``None`` if the turn had ended already.
        Not a checkpoint."""
        if self.finished:
            return None
        self.finished = True
        failed = TurnFailed(self.turn.turn_id, reason, message)
        if self.started:
            fanout.publish(failed)
        with (
            self.reply,
            contextlib.suppress(
                trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
            ),
        ):
            self.reply.send_nowait(failed)
        return failed


class CliWedgedError(ClientError):
    """The CLI had to be killed (it sent nothing, or did not end an interrupted turn)
    after the turn's ``outcome`` was reported: its client is finished and the session
    needs a new one."""

    def __init__(self, message: str, outcome: SessionEvent) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class TurnDeadlines:
    """A turn's deadlines, in seconds (from ``ActorPolicy``)."""

    prompt_write_s: float
    first_chunk_s: float
    stream_idle_s: float
    interrupt_drain_s: float


class TurnRunner:
    """Runs turns, one at a time, on one connected client (one CLI lifetime).

    Attributes:
        claude_session_id: the Claude session id the CLI last reported (``None`` before
            its first turn); kept by the actor to resume the conversation.
        completed: turns completed on this client.
        model: the model the CLI runs, as last named to it (``None``: not known, e.g. a
            resumed CLI, which takes up its conversation's model).
        model_switches: ``set_model`` calls that succeeded on this client.

    Args:
        timeouts: counts ``"first_chunk"`` and ``"stream_idle"`` timeouts (the actor's).
        model: the model the CLI was started with, if known.
    """

    def __init__(
        self,
        client: ClaudeClient,
        deadlines: TurnDeadlines,
        fanout: FanOut,
        permissions: PermissionBroker,
        *,
        session_id: str,
        timeouts: collections.Counter[str],
        slash_commands: Collection[str] = (),
        finish_on_disconnect: bool = False,
        model: str | None = None,
    ) -> None:
        self.client = client
        self.claude_session_id: str | None = None
        self.completed = 0
        self.model = model
        self.model_switches = 0
        self._timeouts = timeouts
        self._deadlines = deadlines
        self._fanout = fanout
        self._permissions = permissions
        self._session_id = session_id
        self._slash_commands = slash_commands
        self._finish_on_disconnect = finish_on_disconnect
        self._awaiting_result = False  # a prompt went out and its TurnResult is unread

    def rename(self, session_id: str) -> None:
        """Name events and logs with ``session_id`` from now on (the session was
        renamed). Not a checkpoint."""
        self._session_id = session_id

    async def run(self, envelope: Envelope, model: str | None = None) -> SessionEvent:
        """Run one turn to its final event, which is delivered to the caller and
        returned; afterwards the client is ready for the next turn.

        First, if ``model`` is given and is not the model the CLI runs, the CLI is
        switched to it (``set_model``, bounded by ``prompt_write_s`` like the prompt: a
        CLI that does not answer in time is killed). A model the CLI refuses fails the
        turn with ``TurnFailed(model_refused)`` before its prompt is sent; the CLI is
        kept and runs its model as before.

        The prompt write is bounded by ``prompt_write_s`` and not cancelled by the caller
        leaving (half a prompt would corrupt the CLI's input). Then the turn runs inside
        ``envelope.cancel_scope``: the caller leaving (or ``interrupt``) ends it with
        ``TurnFailed(interrupted)``, and the CLI's turn is interrupted and drained.

        Raises:
            CliWedgedError: the CLI was killed; the turn has been reported failed.
            ClientError: the CLI failed (or took no prompt in time and was killed); the
                turn has *not* been reported (``started`` says whether its prompt may
                have reached the CLI).

        If cancelled (the session closes), the CLI may be left mid-turn: its client must
        then be closed.
        """
        if model is not None and model != self.model:
            refused = await self._switch_model(envelope, model)
            if refused is not None:
                return refused
        await self._send_prompt(envelope)
        outcome: SessionEvent | None = None
        wedged = False
        with envelope.cancel_scope:
            outcome, wedged = await self._relay(envelope)
        if outcome is None:  # the caller left, or an interrupt was asked for
            outcome = TurnFailed(envelope.turn.turn_id, "interrupted", envelope.interrupt_reason)
        await envelope.finish(outcome, self._fanout)
        if wedged:
            raise CliWedgedError("the CLI was killed after sending nothing", outcome)
        if self._awaiting_result:
            await self._interrupt_and_drain(outcome)
        return outcome

    async def _switch_model(self, envelope: Envelope, model: str) -> SessionEvent | None:
        """Switch the CLI to ``model`` before the turn, for at most ``prompt_write_s``.

        Returns the turn's failure (reported) if the CLI refused the model, else None.

        Raises:
            CliWedgedError: the CLI did not answer in time and was killed; the turn has
                been reported failed (``cli_error``), never to run on another CLI.
            ClientError: the CLI is gone; the turn, not started, may run on the next one.
        """
        with trio.move_on_after(self._deadlines.prompt_write_s):
            try:
                await self.client.set_model(model)
            except ModelRefusedError as exc:
                log.warning("session %s: model %r refused: %s", self._session_id, model, exc)
                failed = envelope.abandon("model_refused", str(exc), self._fanout)
                return failed or TurnFailed(envelope.turn.turn_id, "model_refused", str(exc))
            self.model = model
            self.model_switches += 1
            return None
        seconds = self._deadlines.prompt_write_s
        log.warning(
            "session %s: the CLI did not switch model in %ss: killing it", self._session_id, seconds
        )
        self.client.abort()
        message = f"Claude Code did not switch to model {model!r} within {seconds}s; it was killed"
        failed = envelope.abandon("cli_error", message, self._fanout)
        outcome = failed or TurnFailed(envelope.turn.turn_id, "cli_error", message)
        raise CliWedgedError(message, outcome)

    async def _send_prompt(self, envelope: Envelope) -> None:
        """Write the prompt, for at most ``prompt_write_s`` (a stopped CLI with a full
        input pipe would block it forever): past that, the CLI is killed."""
        prompt = as_user_text(envelope.turn.prompt, self._slash_commands)
        with trio.move_on_after(self._deadlines.prompt_write_s):
            await self.client.query(prompt)
            envelope.started = self._awaiting_result = True
            return
        # Part of it may have gone out: at most once, so the turn fails, never re-runs.
        envelope.started = True
        seconds = self._deadlines.prompt_write_s
        log.warning(
            "session %s: the CLI took no prompt in %ss: killing it", self._session_id, seconds
        )
        self.client.abort()
        raise ClientError(f"Claude Code did not take its prompt within {seconds}s; it was killed")

    async def _relay(self, envelope: Envelope) -> tuple[SessionEvent, bool]:
        """Relay the CLI's messages until its result or a timeout; the outcome, and
        whether the CLI was killed.

        The first message must come within ``first_chunk_s`` of the prompt, each later
        one within ``stream_idle_s`` of the previous (time spent waiting on a slow caller,
        or on a person answering a permission question, does not count).
        """
        turn = envelope.turn
        await self._emit(envelope, TurnStarted(turn.turn_id, self._session_id))
        translator = Translator(turn.turn_id)
        armed_at = trio.current_time()
        deadline = armed_at + self._deadlines.first_chunk_s
        first = True
        while True:
            # One cancel scope while messages keep coming. Each message only notes its
            # time; the scope's deadline is moved on when it passes. Moving it at every
            # message was ~4% of the server's CPU in a relay (py-spy: trio's deadline
            # setter and its deadline heap), a new scope per message three times that.
            with trio.move_on_at(deadline) as waiting:
                while True:
                    message = await self.client.receive()
                    if isinstance(message, TurnResult):
                        self._awaiting_result = False
                        self.claude_session_id = message.claude_session_id
                        outcome = translator.finish(message)
                        if isinstance(outcome, TurnCompleted):
                            self.completed += 1
                        return outcome, False
                    if isinstance(message, SessionInit):
                        self.claude_session_id = message.claude_session_id
                    for event in translator.translate(message):
                        if not self._offer(envelope, event):
                            waiting.deadline = math.inf  # a slow caller's time does not count
                            await self._deliver(envelope, event)
                    armed_at = trio.current_time()
                    if first or waiting.deadline == math.inf:
                        first = False
                        waiting.deadline = armed_at + self._deadlines.stream_idle_s
            deadline = armed_at + self._deadlines.stream_idle_s
            if not first and trio.current_time() < deadline:
                continue  # messages came since the deadline was set: not idle yet
            if self._permissions.active_since(armed_at):
                # Claude Code is (or just was) waiting for a person to approve a tool.
                armed_at = trio.current_time()
                deadline = armed_at + self._deadlines.stream_idle_s
                continue
            return self._timed_out(turn.turn_id, first)

    def _timed_out(self, turn_id: str, first: bool) -> tuple[TurnFailed, bool]:
        if first:
            self._timeouts["first_chunk"] += 1
            seconds = self._deadlines.first_chunk_s
            log.warning(
                "session %s: no message within %ss: killing its CLI", self._session_id, seconds
            )
            self.client.abort()
            message = f"Claude Code sent nothing within {seconds}s; its process was restarted"
            return TurnFailed(turn_id, "timeout", message), True
        self._timeouts["stream_idle"] += 1
        seconds = self._deadlines.stream_idle_s
        message = f"Claude Code sent nothing for {seconds}s; the turn was interrupted"
        return TurnFailed(turn_id, "timeout", message), False

    def _offer(self, envelope: Envelope, event: SessionEvent) -> bool:
        finish = self._finish_on_disconnect
        return envelope.offer(event, self._fanout, finish_on_disconnect=finish)

    async def _deliver(self, envelope: Envelope, event: SessionEvent) -> None:
        await envelope.deliver(event, finish_on_disconnect=self._finish_on_disconnect)

    async def _emit(self, envelope: Envelope, event: SessionEvent) -> None:
        if not self._offer(envelope, event):
            await self._deliver(envelope, event)

    async def _interrupt_and_drain(self, outcome: SessionEvent) -> None:
        """Interrupt the CLI's running turn and read it to its end, so the next turn
        starts clean. Shielded, but bounded by ``interrupt_drain_s``.

        Raises:
            CliWedgedError: the CLI did not finish the turn in time (it is killed).
        """
        with trio.move_on_after(self._deadlines.interrupt_drain_s, shield=True):
            await self.client.interrupt()
            while not isinstance(await self.client.receive(), TurnResult):
                pass
            self._awaiting_result = False
            return
        self.client.abort()
        seconds = self._deadlines.interrupt_drain_s
        raise CliWedgedError(f"the CLI did not end an interrupted turn within {seconds}s", outcome)
