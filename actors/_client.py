"""The small interface between an actor and its Claude Code client.

The actor runtime never imports the Claude SDK. It talks to a ``ClaudeClient`` that
produces the ``ClientMessage`` types below; ``actors._sdk`` adapts the real SDK to it and
``actors.testing`` has a scripted fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from ._types import PermissionDecision, Prompt, SessionKey


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """The per-session part of a client's options; everything else comes from settings.

    Args:
        cwd: the session's own working directory (already created).
        resume: a Claude session id to resume, or ``None`` for a new conversation.
        resume_at: with ``resume``, load the conversation only up to and including this
            CLI transcript message (a ``TurnResult.assistant_uuid``), dropping the rest.
        fork: with ``resume``, continue as a new Claude session (a new id, announced by
            ``SessionInit`` and ``TurnResult``), leaving the resumed transcript untouched.
        can_use_tool: if given, asked before each tool use that needs approval (the
            ``ask`` permission mode); ``None`` leaves it to the CLI's permission mode.
        system_prompt_file: a file (inside the session's workspace, named by the actor,
            never by a request) whose text the CLI appends to its system prompt, before
            any text the server settings append; ``None``: none.
        session_key: the key of the session this client serves now (``None`` while it
            is a warm actor's); a client may be adopted or renamed after it is opened.
    """

    cwd: Path
    resume: str | None = None
    resume_at: str | None = None
    fork: bool = False
    can_use_tool: Callable[[str, dict[str, Any]], Awaitable[PermissionDecision]] | None = None
    system_prompt_file: Path | None = None
    session_key: Callable[[], SessionKey | None] = lambda: None


# -- What a client yields ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A raw Anthropic Messages streaming event (``message_start``, ``content_block_delta``,
    ...), as documented by Anthropic, forwarded by the CLI with ``--include-partial-messages``.
    """

    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AssistantText:
    """A complete text block of an assistant message (also streamed as deltas before)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete ``tool_use`` block of an assistant message."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """A ``tool_result`` block, sent back to the model by the CLI."""

    tool_use_id: str
    content: Any
    is_error: bool


@dataclass(frozen=True, slots=True)
class SessionInit:
    """The CLI announced the Claude session id of the conversation."""

    claude_session_id: str


@dataclass(frozen=True, slots=True)
class TurnResult:
    """The CLI's result message: the end of one turn.

    ``usage`` is the CLI's usage dict (Anthropic field names), ``total_cost_usd`` its cost
    estimate. ``is_error`` with ``result`` holding the error text when the API call failed,
    and ``api_error_status`` the HTTP status the API answered, when the CLI reports it.

    ``assistant_uuid`` is the CLI transcript uuid of the turn's last (top-level) assistant
    message: where a later ``SessionSpec(resume_at=..., fork=True)`` can branch off after
    this turn. ``user_message_uuid`` is the transcript uuid of the turn's prompt. Either
    is ``None`` when the CLI did not say (e.g. no assistant message before an error).
    """

    claude_session_id: str
    is_error: bool
    subtype: str
    result: str | None
    usage: dict[str, Any] | None
    total_cost_usd: float | None
    duration_ms: int
    api_error_status: int | None = None
    assistant_uuid: str | None = None
    user_message_uuid: str | None = None


ClientMessage = StreamEvent | AssistantText | ToolCall | ToolOutput | SessionInit | TurnResult


class ClientError(Exception):
    """The client's CLI process is gone or its stream broke; the client is unusable."""


class ModelRefusedError(Exception):
    """The CLI answered that it will not switch to a model (e.g. one the account may not
    use); it runs the model it ran before and the client is still usable."""


class ClaudeClient(Protocol):
    """One connected Claude Code CLI conversation, used by exactly one task.

    Every method must be called from the task that opened the client (the SDK's task
    group is bound to it).
    """

    @property
    def pid(self) -> int | None:
        """The CLI's process id, or ``None`` if there is no process (fakes)."""
        ...

    async def query(self, prompt: Prompt) -> None:
        """Send one user message (text or content blocks). Raises ``ClientError`` if the
        CLI is gone. Cancelling it may leave a half-written message, so a caller that
        cancels it (a deadline, a session closing) must give up on the client: the actor
        kills or closes the CLI then."""
        ...

    async def set_model(self, model: str | None) -> None:
        """Use ``model`` (``None``: the CLI's default) from the next turn on, in the same
        CLI process. Call between turns. Raises ``ModelRefusedError`` if the CLI refuses
        the model (the client stays usable), ``ClientError`` if it is gone. Cancelling
        it may leave a half-written request: as for ``query``, the caller must then give
        up on the client."""
        ...

    async def warm_up(self) -> None:
        """Do once, before the client's first turn, the work the CLI would otherwise do
        in it, without adding anything to the conversation (the SDK client asks for the
        context usage, as ``/context`` shows it). A CLI that answers with an error is
        fine. Raises ``ClientError`` if the CLI is gone; cancelling it is as for
        ``set_model``."""
        ...

    async def receive(self) -> ClientMessage:
        """Wait for the next message. Raises ``ClientError`` if the stream ended.

        Cancel-safe: a cancelled call loses no message.
        """
        ...

    async def interrupt(self) -> None:
        """Ask the CLI to stop the running turn; it still ends with a ``TurnResult``."""
        ...

    @property
    def alive(self) -> bool:
        """False once the CLI process has exited. Not a checkpoint."""
        ...

    async def wait_exited(self) -> None:
        """Return once the CLI process has exited (for whatever reason)."""
        ...

    def abort(self) -> None:
        """Kill the CLI at once (SIGKILL): it is wedged. Not a checkpoint; leaving the
        client's block then finishes quickly."""
        ...


ClientFactory = Callable[[SessionSpec], AbstractAsyncContextManager[ClaudeClient]]
"""Opens a connected client for a session: ``async with factory(spec) as client:``.

Entering connects (starts the CLI); leaving closes it and its process, even when cancelled.
Raises ``ClientError`` on entry if the CLI cannot be started.
"""


def limit_starts(factory: ClientFactory, limiter: trio.CapacityLimiter) -> ClientFactory:
    """``factory``, starting at most ``limiter.total_tokens`` clients at once.

    A CLI's start (process spawn and the SDK's ``initialize`` handshake) costs about a
    second of CPU. Without a bound, a storm of new sessions on a few cores would leave
    too little CPU for the running sessions and make every start outlast the SDK's
    handshake timeout (60 s), and failed starts cost more starts. Only the start is
    limited, not the client's life.

    A start waiting for its turn is cancelled like any other checkpoint.
    """

    @asynccontextmanager
    async def open_limited(spec: SessionSpec) -> AsyncIterator[ClaudeClient]:
        async with AsyncExitStack() as stack:
            async with limiter:
                client = await stack.enter_async_context(factory(spec))
            yield client

    return open_limited
