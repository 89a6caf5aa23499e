"""The Anthropic Messages API wire format: requests in, SessionEvents out.

Formats follow Anthropic's Messages API documentation: the request body, the Message
object, the streaming event sequence (``message_start``, ``content_block_start``,
``content_block_delta``, ``content_block_stop``, ``message_delta``, ``message_stop``,
``ping``, ``error``) and the error body ``{"type": "error", "error": {...}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors import (
    SessionEvent,
    TextDelta,
    ThinkingDelta,
    TurnCompleted,
    TurnFailed,
)

from ._codec import Message, TurnRequest
from ._media import MediaPart, anthropic_document, anthropic_image
from ._problems import ERROR_TYPES, Problem, RequestError, describe, failure_problem
from ._sse import encode_sse, sse_comment
from ._text import without_client_additions

# -- Errors ---------------------------------------------------------------------------


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
    cleaned = (without_client_additions(text) for text in texts)
    return "\n".join(text for text in cleaned if text)


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


def media_of(
    content: str | list[dict[str, Any]], where: str, role: str
) -> tuple[tuple[dict[str, Any], ...], list[MediaPart]]:
    """The ``image`` and ``document`` blocks of a message's content, in order, checked
    and canonical (``app.wire._media``), with their ``MediaPart``s. Other block types
    are not media (text is read by ``text_of``; Claude Code's ``tool_result`` and the
    like are its own). Not a checkpoint.

    Args:
        content: the message's content.
        where: the message's path (``messages.2``), for errors.
        role: the message's role: only a user message may hold media.

    Raises:
        RequestError: a media block is malformed or unsupported, or not in a user
            message (400, naming the field).
    """
    if isinstance(content, str):
        return (), []
    blocks, parts = [], []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind not in ("image", "document"):
            continue
        if role != "user":
            raise RequestError(
                f"{where}.content.{j}: {kind} blocks can only be in user messages",
                param=f"{where}.content.{j}",
            )
        check = anthropic_image if kind == "image" else anthropic_document
        made, part = check(block, f"{where}.content.{j}")
        blocks.append(made)
        parts.append(part)
    return tuple(blocks), parts


def to_messages(
    request: MessagesRequest, *, from_claude_code: bool
) -> tuple[list[Message], list[MediaPart]]:
    """The request's messages as the pipeline's, and their media's ``MediaPart``s:
    ``system`` first as instructions (not from Claude Code, whose system prompt is about
    its own tools), then the messages without their ``system`` entries (Claude Code may
    put some after the user's message: they address its own tools), their text as
    ``text_of`` gives it, a user message's images and documents as ``media_of`` gives
    them. Not a checkpoint.

    Raises:
        RequestError: as ``media_of``.
    """
    messages = []
    parts: list[MediaPart] = []
    system = "" if request.system is None else text_of(request.system)
    if system and not from_claude_code:
        messages.append(Message("instructions", system))
    for i, m in enumerate(request.messages):
        if m.role != "system":
            media, found = media_of(m.content, f"messages.{i}", m.role)
            messages.append(Message(m.role, text_of(m.content), media))
            parts += found
    return messages, parts


# What an image counts in ``estimate_tokens``: Anthropic's estimate is width x height /
# 750 tokens, about 1,600 for the 1.15 megapixels Claude scales large images to.
IMAGE_TOKENS = 1_600


def estimate_tokens(body: dict[str, Any]) -> int:
    """An estimate of a request's input tokens: its messages, system and tools as compact
    JSON, in characters, divided by 4, except that an ``image`` block counts
    ``IMAGE_TOKENS`` and a base64 document its decoded bytes / 4 (base64 is no measure of
    either). ccactors has no tokenizer; the exact count is what the session's own Claude
    Code reports in each turn's usage. Not a checkpoint."""
    media_tokens = 0

    def without_media(content: Any) -> Any:
        nonlocal media_tokens
        if not isinstance(content, list):
            return content
        kept = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            source = block.get("source") if kind in ("image", "document") else None
            data = source.get("data") if isinstance(source, dict) else None
            if kind == "image":
                media_tokens += IMAGE_TOKENS
            elif kind == "document" and isinstance(data, str) and source.get("type") == "base64":
                media_tokens += len(data) * 3 // 16
            else:
                kept.append(block)
        return kept

    messages = body.get("messages")
    if isinstance(messages, list):
        messages = [
            {**m, "content": without_media(m.get("content"))} if isinstance(m, dict) else m
            for m in messages
        ]
    parts = [body.get("system"), messages, body.get("tools")]
    return len(json.dumps(parts, separators=(",", ":"))) // 4 + 1 + media_tokens


# -- Responses ------------------------------------------------------------------------


def error_json(problem: Problem) -> dict[str, Any]:
    """Anthropic's error JSON for a problem. Not a checkpoint."""
    return error_body(problem.status, problem.message, problem.type)


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
                return self.failed(failure_problem(event))
            case _:
                return []

    def failed(self, problem: Problem) -> list[bytes]:
        """Closes the open block, then an ``error`` event."""
        return [*self._close_block(), encode_sse("error", error_json(problem))]

    def ping(self) -> bytes:
        return encode_sse("ping", {"type": "ping"})

    def end(self) -> list[bytes]:
        return [sse_comment("end")]

    def message(self, events: list[SessionEvent], done: TurnCompleted) -> dict[str, Any]:
        return message_object(self.turn_id, self.model, events, done)

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


class AnthropicCodec:
    """The Anthropic Messages API as a codec of the turn pipeline (``app.wire._codec``)."""

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> TurnRequest:
        """Validate a ``POST /v1/messages`` body and refuse what cannot be honoured.

        Raises:
            RequestError: a field is missing or malformed, or refused
                (``reject_unsupported``); an image or document is malformed or of an
                unsupported type (``media_of``).
        """
        try:
            request = MessagesRequest.model_validate(body)
        except ValidationError as exc:
            raise RequestError(describe(exc)) from None
        reject_unsupported(body)
        from_claude_code = headers.get("User-Agent", "").startswith("claude-cli/")
        messages, media_parts = to_messages(request, from_claude_code=from_claude_code)
        return TurnRequest(
            model=request.model,
            messages=messages,
            stream=request.stream,
            size=len(request.messages),
            media_parts=media_parts,
        )

    def error_json(self, problem: Problem) -> dict[str, Any]:
        return error_json(problem)

    def reply(self, turn_id: str, request: TurnRequest) -> StreamEncoder:
        return StreamEncoder(turn_id, request.model)
