"""A scripted fake ``ClaudeClient`` for tests on Trio's virtual clock.

The fake replays, for each prompt, a script of ``Step``s: a message and the delay before
it (seconds after the previous step). With ``trio.testing.MockClock(autojump_threshold=0)``
the delays are virtual, so tests can assert exact times. It stands in for the Claude
Code CLI only in unit tests; end-to-end tests drive the real CLI.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from ._client import (
    AssistantText,
    ClaudeClient,
    ClientError,
    ClientMessage,
    ModelRefusedError,
    Prompt,
    SessionSpec,
    StreamEvent,
    ToolOutput,
    TurnResult,
)


@dataclass(frozen=True, slots=True)
class AskPermission:
    """A script step standing for Claude Code asking to use a tool: the fake client calls
    the session's ``can_use_tool`` and yields the ``ToolOutput`` (the decision's message
    with ``is_error`` if denied) instead of this marker."""

    tool_name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted message, ``delay`` seconds after the previous step (``math.inf``: never)."""

    delay: float
    message: ClientMessage


def text_reply(
    text: str,
    *,
    chunks: int = 1,
    first_delay: float = 0.0,
    chunk_delay: float = 0.0,
) -> list[Step]:
    """The steps of a plain text answer, streamed as the CLI streams it.

    Args:
        text: the whole answer; split into ``chunks`` text deltas.
        first_delay: seconds before the first message (``message_start``).
        chunk_delay: seconds before each later delta.

    Returns:
        ``message_start``, ``content_block_start``, the deltas, ``content_block_stop``,
        ``message_delta`` (``end_turn``), ``message_stop``, the full text, and a result.
    """
    size = max(1, math.ceil(len(text) / chunks))
    pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": "fake-model"}
    block = {"type": "text", "text": ""}
    steps = [
        Step(first_delay, StreamEvent({"type": "message_start", "message": message})),
        Step(0, StreamEvent({"type": "content_block_start", "index": 0, "content_block": block})),
    ]
    for n, piece in enumerate(pieces):
        delta = {"type": "text_delta", "text": piece}
        event = {"type": "content_block_delta", "index": 0, "delta": delta}
        steps.append(Step(chunk_delay if n else 0, StreamEvent(event)))
    steps += [
        Step(0, StreamEvent({"type": "content_block_stop", "index": 0})),
        Step(0, StreamEvent({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})),
        Step(0, StreamEvent({"type": "message_stop"})),
        Step(0, AssistantText(text)),
        Step(0, _result("", output_tokens=len(pieces))),
    ]
    return steps


def _result(claude_session_id: str, *, subtype: str = "success", output_tokens: int = 0):
    return TurnResult(
        claude_session_id=claude_session_id,
        is_error=subtype != "success",
        subtype=subtype,
        result=None,
        usage={"input_tokens": 1, "output_tokens": output_tokens},
        total_cost_usd=0.0,
        duration_ms=0,
    )


Script = Callable[[str, Sequence[str]], list[Step]]
"""Given the prompt and all prompts of the conversation so far (including it), the steps.

A prompt of content blocks reaches a script as ``prompt_text`` renders it."""


def prompt_text(prompt: Prompt) -> str:
    """A prompt as one string: its text blocks' text, other blocks as ``[image]``,
    ``[document]`` and so on, joined by blank lines. Not a checkpoint."""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for block in prompt:
        kind = block.get("type")
        parts.append(block.get("text", "") if kind == "text" else f"[{kind}]")
    return "\n\n".join(parts)


def echo_script(prompt: str, history: Sequence[str]) -> list[Step]:
    """Answer ``echo: <prompt>`` (turn ``n`` of the conversation: ``... #n``)."""
    return text_reply(f"echo: {prompt} #{len(history)}")


class ScriptedClient:
    """A ``ClaudeClient`` that plays a script per prompt. Cancel-safe like the real one.

    After ``interrupt()`` the running turn ends with an ``error_during_execution`` result
    ``interrupt_delay`` seconds later, as the CLI does.

    Attributes:
        prompts: the conversation's prompts (``prompt_text``), shared with the factory's
            ``transcripts``.
        sent: every prompt this client was sent, as sent (text or content blocks).
        model: the model set by ``set_model`` (``None``: the default); a text reply's
            ``message_start`` names it.
        set_model_calls: every ``set_model`` call, in order (refused ones included).
        set_model_delay: seconds each ``set_model`` takes (``math.inf``: no answer ever).
        warm_ups: how many times ``warm_up`` was called.
        closed: its factory closed it (the caller left the client's block).
    """

    def __init__(
        self,
        script: Script,
        *,
        claude_session_id: str,
        interrupt_delay: float,
        transcript: list[str] | None = None,
        message_ids: list[str] | None = None,
        can_use_tool: Any = None,
        nursery: trio.Nursery | None = None,
        refused_models: frozenset[str] = frozenset(),
        set_model_delay: float = 0.0,
    ) -> None:
        self.claude_session_id = claude_session_id
        self._can_use_tool = can_use_tool
        self._nursery = nursery
        self._asking = False
        self._woken = trio.lowlevel.ParkingLot()
        self.prompts: list[str] = [] if transcript is None else transcript
        self.message_ids: list[str] = [] if message_ids is None else message_ids
        self.sent: list[Prompt] = []
        self.model: str | None = None
        self.set_model_calls: list[str | None] = []
        self._refused_models = refused_models
        self.set_model_delay = set_model_delay
        self.warm_ups = 0
        self.closed = False
        self.interrupts = 0
        self.aborted = False
        self._script = script
        self._interrupt_delay = interrupt_delay
        self._pending: list[tuple[float, ClientMessage]] = []  # (due time, message)
        self._broken = False
        self._exited = trio.Event()

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return not self._broken

    def abort(self) -> None:
        self.aborted = True
        self.break_()

    async def wait_exited(self) -> None:
        await self._exited.wait()

    def break_(self) -> None:
        """Make the client behave as if its CLI process died (``alive`` turns false).
        Not a checkpoint."""
        self._broken = True
        self._exited.set()
        self._woken.unpark_all()

    async def query(self, prompt: Prompt) -> None:
        await trio.lowlevel.checkpoint()
        if self._broken:
            raise ClientError("the fake CLI is gone")
        self.sent.append(prompt)
        text = prompt_text(prompt)
        self.prompts.append(text)
        # The transcript uuid of this turn's assistant message (a fork point).
        message_id = f"msg-{uuid.uuid4().hex[:12]}"
        self.message_ids.append(message_id)
        due = trio.current_time()
        for step in self._script(text, tuple(self.prompts)):
            due += step.delay
            message = step.message
            if isinstance(message, TurnResult):
                message = dataclasses.replace(
                    message, claude_session_id=self.claude_session_id, assistant_uuid=message_id
                )
            elif isinstance(message, StreamEvent) and self.model is not None:
                message = _with_model(message, self.model)
            self._pending.append((due, message))

    async def set_model(self, model: str | None) -> None:
        self.set_model_calls.append(model)
        await trio.lowlevel.checkpoint()
        if self._broken:
            raise ClientError("the fake CLI is gone")
        await trio.sleep(self.set_model_delay)
        if model in self._refused_models:
            raise ModelRefusedError(f"the fake CLI refuses model {model!r}")
        self.model = model

    async def warm_up(self) -> None:
        self.warm_ups += 1
        await trio.lowlevel.checkpoint()
        if self._broken:
            raise ClientError("the fake CLI is gone")

    async def receive(self) -> ClientMessage:
        while True:
            if self._broken:
                await trio.lowlevel.checkpoint()
                raise ClientError("the fake CLI is gone")
            if self._pending and not self._asking:
                due, message = self._pending[0]
                with trio.move_on_at(due):
                    await self._woken.park()
                if self._pending and self._pending[0] == (due, message) and not self._asking:
                    del self._pending[0]
                    if not isinstance(message, AskPermission):
                        return message
                    # Like the SDK: the question is handled in the client's own task
                    # group, not in this receive, so cancelling a receive leaves it be.
                    self._asking = True
                    self._nursery.start_soon(self._ask, message)
            else:
                await self._woken.park()

    async def _ask(self, ask: AskPermission) -> None:
        if self._can_use_tool is None:
            raise AssertionError("the script asks for permission; enable ask_permissions")
        decision = await self._can_use_tool(ask.tool_name, ask.input)
        output = ToolOutput("toolu_fake", decision.message or "ok", is_error=not decision.allow)
        self._pending.insert(0, (trio.current_time(), output))
        self._asking = False
        self._woken.unpark_all()

    async def interrupt(self) -> None:
        await trio.lowlevel.checkpoint()
        self.interrupts += 1
        if self._pending:
            due = trio.current_time() + self._interrupt_delay
            result = _result(self.claude_session_id, subtype="error_during_execution")
            self._pending = [(due, result)]


def _with_model(message: StreamEvent, model: str) -> StreamEvent:
    event = message.event
    if event.get("type") != "message_start":
        return message
    return StreamEvent({**event, "message": {**event["message"], "model": model}})


@dataclass
class ScriptedClientFactory:
    """Opens ``ScriptedClient``s; records what it opened. A ``ClientFactory``.

    Args:
        script: what each client answers (default: ``echo_script``).
        connect_delay: seconds a connect takes.
        interrupt_delay: seconds from ``interrupt()`` to the turn's end.
        fail_connect: if true, connecting raises ``ClientError``.
        refused_models: models whose ``set_model`` raises ``ModelRefusedError``.
        set_model_delay: seconds a ``set_model`` takes (``math.inf``: it never returns,
            as with a stopped CLI).

    Attributes:
        clients: every client opened, in order.
        live: clients open now (connected and not yet closed).
        specs: the ``SessionSpec`` of each open call.
        transcripts: prompts per Claude session id; a client opened with ``resume``
            continues that list, as the CLI continues its transcript, and fails to
            start if there is none (clear it to lose every conversation). With
            ``resume_at`` the list is cut after that turn; with ``fork`` the cut copy
            becomes a new Claude session's and the original stays as it was.
        message_ids: per Claude session id, each turn's assistant message uuid (the
            ``TurnResult.assistant_uuid``), parallel to ``transcripts``.
    """

    script: Script = echo_script
    connect_delay: float = 0.0
    interrupt_delay: float = 0.0
    fail_connect: bool = False
    refused_models: frozenset[str] = frozenset()
    set_model_delay: float = 0.0
    clients: list[ScriptedClient] = field(default_factory=list)
    specs: list[SessionSpec] = field(default_factory=list)
    transcripts: dict[str, list[str]] = field(default_factory=dict)
    message_ids: dict[str, list[str]] = field(default_factory=dict)
    live: int = 0

    @asynccontextmanager
    async def __call__(self, spec: SessionSpec) -> AsyncIterator[ClaudeClient]:
        self.specs.append(spec)
        await trio.sleep(self.connect_delay)
        if self.fail_connect:
            raise ClientError("the fake CLI failed to start")
        if spec.resume is not None and spec.resume not in self.transcripts:
            raise ClientError(f"No conversation found with session ID: {spec.resume}")
        session_id = spec.resume or f"fake-{uuid.uuid4().hex[:8]}"
        prompts = self.transcripts.setdefault(session_id, [])
        ids = self.message_ids.setdefault(session_id, [])
        cut = len(prompts)
        if spec.resume is not None and spec.resume_at is not None:
            if spec.resume_at not in ids:
                raise ClientError(f"No message found with message.uuid of: {spec.resume_at}")
            cut = ids.index(spec.resume_at) + 1
        if spec.resume is not None and spec.fork:
            session_id = f"fake-{uuid.uuid4().hex[:8]}"
            prompts = self.transcripts[session_id] = prompts[:cut]
            ids = self.message_ids[session_id] = ids[:cut]
        else:
            del prompts[cut:], ids[cut:]
        # A task group entered here and left on close, as the SDK's is: exceptions from
        # the caller's block do not pass through it (so they are not wrapped in groups).
        task_group = trio.open_nursery()
        nursery = await task_group.__aenter__()
        client = ScriptedClient(
            self.script,
            claude_session_id=session_id,
            interrupt_delay=self.interrupt_delay,
            transcript=prompts,
            message_ids=ids,
            can_use_tool=spec.can_use_tool,
            nursery=nursery,
            refused_models=self.refused_models,
            set_model_delay=self.set_model_delay,
        )
        self.clients.append(client)
        self.live += 1
        try:
            yield client
        finally:
            self.live -= 1
            client.closed = True
            nursery.cancel_scope.cancel()
            # (Waits only for its own cancelled children; no new cancel scope may be
            # opened around it, as it was entered before the caller's.)
            await task_group.__aexit__(None, None, None)
