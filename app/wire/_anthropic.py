"""The Anthropic Messages API wire format: requests in, SessionEvents out.

Formats follow Anthropic's Messages API documentation: the request body, the Message
object, the streaming event sequence (``message_start``, ``content_block_start``,
``content_block_delta``, ``content_block_stop``, ``message_delta``, ``message_stop``,
``ping``, ``error``) and the error body ``{"type": "error", "error": {...}}``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from actors import (
    InvalidSessionIdError,
    SessionEvent,
    SessionKey,
    TextDelta,
    ThinkingDelta,
    TurnCompleted,
    TurnFailed,
)

from . import _json
from ._problems import RequestError
from ._sse import encode_sse

# -- Errors ---------------------------------------------------------------------------

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    415: "invalid_request_error",
    421: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# How a failed turn is reported: (HTTP status, Anthropic error type).
FAILURE_STATUS = {
    "timeout": (504, "timeout_error"),
    "upstream_error": (502, "api_error"),
    "cli_error": (502, "api_error"),
    "session_closed": (503, "overloaded_error"),
    "interrupted": (409, "api_error"),
    "overloaded": (503, "overloaded_error"),
}


def error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """Anthropic's error JSON for an HTTP status (type chosen from the status if not given)."""
    kind = error_type or ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# -- Requests -------------------------------------------------------------------------


class InputMessage(BaseModel):
    """One entry of ``messages``: a role and string or content-block content."""

    model_config = ConfigDict(extra="allow")
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class MessagesRequest(BaseModel):
    """The body of ``POST /v1/messages``.

    ``model``, ``messages`` and ``stream`` are honoured; other fields are accepted and
    not forwarded: the CLI's own options come from server settings only.
    """

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[InputMessage] = Field(min_length=1)
    stream: bool = False
    metadata: dict[str, Any] | None = None
    system: str | list[dict[str, Any]] | None = None


# What Claude Code, as a client of ours, adds to a user's message: not the user's words.
_CLIENT_ADDITIONS = re.compile(
    r"<system-reminder>.*?</system-reminder>|\[Request interrupted by user[^\]]*\]", re.DOTALL
)


def text_of(content: str | list[dict[str, Any]]) -> str:
    """The text of a message's content: the string, or its ``text`` blocks joined by
    newlines, without ``<system-reminder>`` sections or ``[Request interrupted by user]``
    markers (what Claude Code adds when it is our client)."""
    if isinstance(content, str):
        texts = [content]
    else:
        texts = [
            block["text"]
            for block in content
            if block.get("type") == "text" and isinstance(block.get("text"), str)
        ]
    cleaned = (_CLIENT_ADDITIONS.sub("", text).strip() for text in texts)
    return "\n".join(text for text in cleaned if text)


def conversation(request: MessagesRequest) -> list[InputMessage]:
    """The request's messages up to its latest user message (``system`` entries, which
    Claude Code may put after it, are dropped: they address its own tools).

    Raises:
        RequestError: no user message is last (ignoring ``system`` entries).
    """
    messages = [m for m in request.messages if m.role != "system"]
    if not messages or messages[-1].role != "user":
        raise RequestError("the last message must have role 'user'")
    return messages


def new_prompt(request: MessagesRequest) -> str:
    """The text of the latest user message (see ``text_of``).

    Raises:
        RequestError: the last message is not a user message with text.
    """
    text = text_of(conversation(request)[-1].content)
    if not text:
        raise RequestError("the last user message has no text content")
    return text


def turn_prompt(request: MessagesRequest, *, in_session: bool, from_claude_code: bool) -> str:
    """The prompt of the turn a request asks for: the latest user message, preceded by

    * ``system`` as instructions, when the request opens a conversation (it has no
      assistant message yet; later turns' ``system`` went with the first) and the client
      is not Claude Code (whose system prompt is about its own tools);
    * without a session, the earlier messages as context. With a session they are not
      sent: the session's CLI already holds them.

    The same rules as the OpenAI route's ``chat_prompt``.

    Raises:
        RequestError: as ``new_prompt``.
    """
    prompt = new_prompt(request)
    messages = conversation(request)
    opening = not any(m.role == "assistant" for m in messages)
    sections = []
    system = "" if request.system is None else text_of(request.system)
    if system and opening and not from_claude_code:
        sections.append(f"Instructions:\n\n{system}")
    earlier = [
        f"{'User' if m.role == 'user' else 'Assistant'}: {text}"
        for m in messages[:-1]
        if (text := text_of(m.content))
    ]
    if earlier and not in_session:
        sections.append("The conversation so far:\n\n" + "\n\n".join(earlier))
    if not sections:
        return prompt
    return "\n\n".join([*sections, f"The user's new message:\n\n{prompt}"])


def reject_unsupported(body: dict[str, Any]) -> None:
    """Refuse request fields whose meaning Claude Code cannot honour.

    ``output_config.format`` (structured output) is refused: the CLI answers in prose and
    cannot promise a schema. (Claude Code, as our client, sends such requests to title
    its sessions; refusing them leaves its conversation alone.) Other fields (``system``,
    ``tools``, ``temperature``, ``max_tokens``, ``thinking``...) are accepted and not
    forwarded: the session's own Claude Code has its own.

    Raises:
        RequestError: a refused field is present.
    """
    output_config = body.get("output_config")
    if isinstance(output_config, dict) and output_config.get("format"):
        raise RequestError(
            "output_config.format (structured output) is not supported: Claude Code answers "
            "in prose"
        )


def estimate_tokens(body: dict[str, Any]) -> int:
    """An estimate of a request's input tokens: its messages, system and tools as compact
    JSON, in characters, divided by 4. ccactors has no tokenizer; the exact count is
    what the session's own Claude Code reports in each turn's usage."""
    parts = [body.get(name) for name in ("system", "messages", "tools")]
    return len(json.dumps(parts, separators=(",", ":"))) // 4 + 1


_LEGACY_USER_ID = re.compile(r"_session_([0-9A-Za-z-]+)$")


def session_id_from(headers: Any, body: dict[str, Any]) -> str | None:
    """The caller's session id, first match wins: header ``X-Session-ID``; header
    ``X-Claude-Code-Session-Id``; ``metadata.user_id`` (legacy ``..._session_<uuid>``
    suffix, or a JSON string with ``session_id``); ``metadata.session_id``.

    Returns ``None`` if there is none. Not validated here (``SessionKey`` validates).
    """
    for header in ("X-Session-ID", "X-Claude-Code-Session-Id"):
        if value := headers.get(header):
            return value
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return None
    user_id = metadata.get("user_id")
    if isinstance(user_id, str) and user_id:
        if match := _LEGACY_USER_ID.search(user_id):
            return match.group(1)
        try:
            decoded = _json.loads(user_id)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and isinstance(decoded.get("session_id"), str):
            return decoded["session_id"]
    session_id = metadata.get("session_id")
    return session_id if isinstance(session_id, str) and session_id else None


def session_key_from(headers: Any, body: dict[str, Any], principal: str = "") -> SessionKey | None:
    """``session_id_from`` as a validated ``SessionKey`` (``None`` without a session id).

    Raises:
        RequestError: the session id is not of the allowed form.
    """
    session_id = session_id_from(headers, body)
    if session_id is None:
        return None
    try:
        return SessionKey(session_id, principal)
    except InvalidSessionIdError as exc:
        raise RequestError(f"invalid session id: {exc}") from None


# -- Responses ------------------------------------------------------------------------


def message_id(turn_id: str) -> str:
    return "msg_" + turn_id.removeprefix("turn_")


def usage_of(done: TurnCompleted) -> dict[str, int]:
    """Anthropic's ``usage`` object from a completed turn."""
    return {
        "input_tokens": done.usage.input_tokens,
        "output_tokens": done.usage.output_tokens,
        "cache_creation_input_tokens": done.usage.cache_creation_input_tokens,
        "cache_read_input_tokens": done.usage.cache_read_input_tokens,
    }


def retry_headers(failed: TurnFailed) -> dict[str, str]:
    """Headers telling the official clients (which retry 408, 409, 429 and 5xx by
    themselves) not to retry a turn that may already have run: a retry would put the
    same prompt into the conversation again. An upstream API error is theirs to retry."""
    return {} if failed.reason == "upstream_error" else {"x-should-retry": "false"}


def failure_error(failed: TurnFailed) -> tuple[int, dict[str, Any]]:
    """The HTTP status and Anthropic error body for a failed turn. An API error the CLI
    got keeps its status (e.g. 429, 529), so clients can apply their own retry rules."""
    status, kind = FAILURE_STATUS[failed.reason]
    upstream = failed.upstream_status
    if failed.reason == "upstream_error" and upstream in ERROR_TYPES:
        # The server's own credentials or endpoint are wrong: not the client's business.
        status = 502 if upstream in (401, 403, 404) else upstream
        kind = ERROR_TYPES[status]
    return status, error_body(status, failed.message, kind)


def message_object(
    turn_id: str, model: str, events: list[SessionEvent], done: TurnCompleted
) -> dict[str, Any]:
    """The non-streaming response: a Message object built from a turn's events. Its
    ``model`` is the one Claude Code used (the server's choice), when known; else the
    requested one."""
    blocks: dict[int, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, TextDelta):
            block = blocks.setdefault(event.block_index, {"type": "text", "text": ""})
            block["text"] += event.text
        elif isinstance(event, ThinkingDelta):
            block = blocks.setdefault(
                event.block_index, {"type": "thinking", "thinking": "", "signature": ""}
            )
            block["thinking"] += event.thinking
    return {
        "id": message_id(turn_id),
        "type": "message",
        "role": "assistant",
        "model": done.model or model,
        "content": [blocks[i] for i in sorted(blocks)],
        "stop_reason": done.stop_reason,
        "stop_sequence": None,
        "usage": usage_of(done),
    }


class StreamEncoder:
    """Encodes one turn's SessionEvents as Anthropic streaming SSE frames.

    ``start()`` gives ``message_start`` and a ``ping``; ``encode(event)`` gives the
    frames for each event: a delta opens a new content block when its ``block_index``
    changes; ``TurnCompleted`` closes the message; ``TurnFailed`` becomes an ``error``
    event. Tool events are Claude Code's own (run server side) and are not sent.
    """

    def __init__(self, turn_id: str, model: str) -> None:
        self.turn_id = turn_id
        self.model = model
        self._open: int | None = None  # our index of the open block
        self._next = 0  # Anthropic's index for the next block
        self._source_index: int | None = None

    def start(self) -> list[bytes]:
        message = {
            "id": message_id(self.turn_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [
            encode_sse("message_start", {"type": "message_start", "message": message}),
            encode_sse("ping", {"type": "ping"}),
        ]

    def encode(self, event: SessionEvent) -> list[bytes]:
        match event:
            case TextDelta(text=text, block_index=source):
                return self._delta(source, {"type": "text", "text": ""}, "text_delta", text)
            case ThinkingDelta(thinking=thinking, block_index=source):
                block = {"type": "thinking", "thinking": "", "signature": ""}
                return self._delta(source, block, "thinking_delta", thinking)
            case TurnCompleted():
                frames = self._close_block()
                delta = {"stop_reason": event.stop_reason, "stop_sequence": None}
                frames.append(
                    encode_sse(
                        "message_delta",
                        {"type": "message_delta", "delta": delta, "usage": usage_of(event)},
                    )
                )
                frames.append(encode_sse("message_stop", {"type": "message_stop"}))
                return frames
            case TurnFailed():
                _, body = failure_error(event)
                return [*self._close_block(), encode_sse("error", body)]
            case _:
                return []

    def _delta(self, source: int, block: dict[str, Any], kind: str, text: str) -> list[bytes]:
        frames: list[bytes] = []
        if source != self._source_index:
            frames += self._close_block()
            self._source_index, self._open = source, self._next
            self._next += 1
            frames.append(
                encode_sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": self._open, "content_block": block},
                )
            )
        field = "text" if kind == "text_delta" else "thinking"
        frames.append(
            encode_sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": self._open,
                    "delta": {"type": kind, field: text},
                },
            )
        )
        return frames

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open, self._source_index = self._open, None, None
        return [encode_sse("content_block_stop", {"type": "content_block_stop", "index": index})]
