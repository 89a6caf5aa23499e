"""Domain types shared by the actor runtime and its callers: keys, turns, events, errors.

Nothing here knows about HTTP or the Claude SDK. Events are plain frozen dataclasses;
the app layer translates them to wire formats (Anthropic SSE, OpenAI SSE, WebSocket JSON).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class InvalidSessionIdError(ValueError):
    """A session id does not match ``^[A-Za-z0-9._:-]{1,128}$``."""


@dataclass(frozen=True, slots=True)
class SessionKey:
    """Identifies one conversation session.

    Args:
        session_id: the caller's session id; must match ``^[A-Za-z0-9._:-]{1,128}$``.
        principal: who owns the session (the authenticated caller); empty when auth is off.

    Raises:
        InvalidSessionIdError: if ``session_id`` is not of the allowed form. The id is
            validated here so that no unvalidated id ever reaches a registry or a path.
    """

    session_id: str
    principal: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, str) or not SESSION_ID_PATTERN.fullmatch(
            self.session_id
        ):
            raise InvalidSessionIdError(
                "session id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -"
            )


Prompt = str | list[dict[str, Any]]
"""A user message: plain text, or a list of Anthropic Messages content blocks (``text``,
``image``, ``document``, as documented by Anthropic)."""


def new_turn_id() -> str:
    """Return a fresh turn id (``turn_`` plus 24 hex digits). Not a checkpoint."""
    return f"turn_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message for a session.

    Args:
        prompt: the new user message: text, or content blocks (``Prompt``). Only this is
            sent to the CLI: the rest of the conversation already lives in the session's
            CLI process (or transcript).
        turn_id: identifies the turn in events and logs.
        model: the Claude model to answer this turn (an id or a Claude Code alias such as
            ``sonnet``), or ``None`` for the session's current model. The session's CLI
            switches to it before the turn (``set_model``, no restart) if it runs
            another, and the session stays on it for later turns.
        system: text to append to Claude Code's system prompt if this turn starts its
            session's conversation (a new session, never one known from before);
            ignored otherwise: a session's system prompt is fixed by its opening turn.
            It never reaches the CLI's arguments or environment: it is written to a file
            in the session's workspace, which the CLI reads at start-up.
    """

    prompt: Prompt
    turn_id: str = field(default_factory=new_turn_id)
    model: str | None = None
    system: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts for one turn, as reported by the CLI's result message.

    Field names are Anthropic's Messages API usage fields.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Usage:
        """Build from the CLI's usage dict; missing or non-integer fields count as 0."""
        raw = raw or {}

        def count(name: str) -> int:
            value = raw.get(name)
            return value if isinstance(value, int) else 0

        return cls(
            input_tokens=count("input_tokens"),
            output_tokens=count("output_tokens"),
            cache_creation_input_tokens=count("cache_creation_input_tokens"),
            cache_read_input_tokens=count("cache_read_input_tokens"),
        )


# -- Session events ------------------------------------------------------------------
# A turn produces: TurnStarted, then any number of deltas and tool events, then exactly
# one of TurnCompleted or TurnFailed, after which the reply channel is closed.


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """The session's actor has taken the turn from its mailbox and sent it to the CLI."""

    turn_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of assistant text, as it streams.

    ``block_index`` numbers the content blocks of the whole turn from 0; a new index
    means a new block (a turn that uses tools has several model messages).
    """

    turn_id: str
    text: str
    block_index: int


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A piece of the model's extended thinking, as it streams."""

    turn_id: str
    thinking: str
    block_index: int


@dataclass(frozen=True, slots=True)
class ToolUse:
    """Claude Code decided to call a tool (Anthropic ``tool_use`` block)."""

    turn_id: str
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The result of a tool call (Anthropic ``tool_result`` block)."""

    turn_id: str
    tool_use_id: str
    content: Any
    is_error: bool


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"]


@dataclass(frozen=True, slots=True)
class TurnCompleted:
    """The turn finished; usage and cost come from the CLI's result message.

    ``stop_reason`` uses Anthropic's values (``end_turn``, ``max_tokens``, ...).
    ``total_cost_usd`` is the CLI's own estimate for this turn, or ``None``.
    ``assistant_uuid`` is the CLI transcript uuid of the turn's last assistant message
    (``None`` if the CLI did not say): a later session can fork the conversation there
    (``ForkPoint``).
    """

    turn_id: str
    stop_reason: str
    usage: Usage
    total_cost_usd: float | None
    claude_session_id: str | None
    duration_ms: int
    model: str | None
    assistant_uuid: str | None = None


FailureReason = Literal[
    "interrupted",  # the caller went away or asked to stop
    "timeout",  # a first-chunk or stream-idle deadline passed
    "upstream_error",  # the CLI reported an API error for this turn
    "cli_error",  # the CLI process failed or died
    "session_closed",  # the session closed before the turn could run
    "overloaded",  # no live CLI slot could be had to wake the session
    "model_refused",  # Claude Code would not switch to the turn's model
]


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """The turn ended without a result. ``reason`` says why; ``message`` is for humans."""

    turn_id: str
    reason: FailureReason
    message: str
    upstream_status: int | None = None  # the API's HTTP status, for upstream_error


SessionEvent = (
    TurnStarted | TextDelta | ThinkingDelta | ToolUse | ToolResult | TurnCompleted | TurnFailed
)


@dataclass(frozen=True, slots=True)
class PermissionRequest:
    """To a session's listeners: Claude Code asks to use a tool (``ask`` permission mode).

    Answer with ``Supervisor.answer_permission(key, request_id, allow)``; without an
    answer within the permission timeout the tool is denied.
    """

    request_id: str
    turn_id: str
    tool_name: str
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PermissionDecision:
    """The answer to a ``PermissionRequest``; ``message`` says why, for the model."""

    allow: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class Lagged:
    """To a session listener only: ``dropped`` events were lost because it read too slowly."""

    dropped: int


@dataclass(frozen=True, slots=True)
class ForkPoint:
    """Where a new session branches off an existing Claude Code conversation.

    The new session's first CLI resumes ``claude_session_id`` up to and including the
    transcript message ``assistant_uuid`` (a ``TurnCompleted.assistant_uuid``) as a new
    Claude session: the conversation it forks from is left as it was, and stays
    continuable by its own session.
    """

    claude_session_id: str
    assistant_uuid: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What it takes to resume a session later, by this server or a restarted one.

    Wall-clock times (seconds since the epoch). ``cwd`` is the session's workspace: the
    CLI finds a conversation by its working directory and Claude session id. ``model``
    is the model the session runs (as named to the CLI), ``None`` if it never chose one.
    """

    key: SessionKey
    cwd: Path
    claude_session_id: str | None
    turns: int
    created_at: float
    last_active_at: float
    model: str | None = None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """What an observer learns when a turn ends (for metrics and logs).

    Times are ``trio.current_time()`` values (seconds); ``first_output_at`` is when the
    first text or thinking delta was relayed, ``None`` if there was none.
    """

    session_id: str
    turn_id: str
    outcome: TurnCompleted | TurnFailed
    queued_at: float
    started_at: float
    first_output_at: float | None
    ended_at: float
    session: SessionRecord | None  # None for a one-turn session: nothing to resume


class Observer:
    """Receives notices from the actors; subclass and override what you need.

    Methods are called synchronously from actor tasks: they must be quick and must not
    raise or checkpoint.
    """

    def turn_ended(self, record: TurnRecord) -> None:
        """A turn delivered its final event (or was abandoned)."""

    def cli_started(self, session_id: str | None, pid: int | None) -> None:
        """A CLI process connected (``session_id`` is None for a warm-pool actor)."""

    def session_forgotten(self, key: SessionKey) -> None:
        """A session was forgotten for good (retention passed, or it failed too often);
        not called at shutdown, when sessions are only stopped."""


# -- Errors raised to callers ---------------------------------------------------------


class SessionError(Exception):
    """Base class for errors the supervisor raises to callers."""


class RetryLaterError(SessionError):
    """A refusal that a retry after ``retry_after_s`` seconds (at least 1) may overcome:
    HTTP 429 or 503 with ``Retry-After``."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CapacityError(RetryLaterError):
    """No room: ``max_sessions`` reached, or every live CLI slot held by a busy session."""


class MailboxFullError(RetryLaterError):
    """The session's mailbox is full: too many turns already waiting."""


class PrincipalLimitError(RetryLaterError):
    """A principal (API key) is at its limit of concurrent turns or of sessions."""


class SessionStartError(SessionError):
    """The session's CLI process could not be started (executable missing, crashed)."""


class SupervisorClosedError(SessionError):
    """The supervisor is shutting down and accepts no new turns."""


class SessionNotFoundError(SessionError):
    """No such session (never started, or forgotten)."""
