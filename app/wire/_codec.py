"""What a codec is: the pipeline's request type, and the interface every API implements
(parse a request into a ``TurnRequest``; word a ``Problem``; encode a turn's events).
``app.http._pipeline`` drives codecs; nothing here knows HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from actors import SessionEvent, TurnCompleted

from ._media import MediaPart
from ._problems import Problem


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a request: ``instructions`` (a system prompt, developer
    message...), ``user`` or ``assistant``.

    Attributes:
        role: as above.
        text: all its text parts, joined by newlines.
        media: its images and documents (user messages only), in request order, as
            Anthropic ``image`` / ``document`` content blocks in the canonical form of
            ``app.wire._media``: only the fields Anthropic documents, in a fixed order
            (``type``, ``source`` with ``type`` then ``media_type`` and ``data``, or
            ``url``; then a document's ``title``, ``context``, ``citations`` if given);
            ``cache_control`` and unknown fields dropped. Both APIs give the same dict
            for the same attachment; ``app.wire._media.canonical_json`` is its stable
            byte form (compact, sorted keys) for hashing.
    """

    role: Literal["instructions", "user", "assistant"]
    text: str
    media: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class TurnRequest:
    """What a codec makes of a request body: all a turn needs, in no API's words.

    Attributes:
        model: the requested model name (``""``: none), resolved by the pipeline
            (``Settings.resolve_model``) into the turn's model.
        messages: instructions, user and assistant messages in order; the last is the
            user's new message.
        stream: whether to answer with a stream.
        size: how many messages the request carried (for ``max_messages``).
        options: codec-specific choices for encoding the reply (``include_usage``).
        media_parts: every image and document of the request, in order, with where it
            is and its decoded size (for ``max_media_blocks``, ``max_image_bytes``,
            ``max_document_bytes``).
    """

    model: str
    messages: list[Message]
    stream: bool = False
    size: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    media_parts: list[MediaPart] = field(default_factory=list)


class Reply(Protocol):
    """One turn's answer in an API's wire format (made by ``Codec.reply``)."""

    def message(self, events: list[SessionEvent], done: TurnCompleted) -> dict[str, Any]:
        """The non-streaming response body of a completed turn."""

    def start(self) -> list[bytes]:
        """The first frames of a stream, sent once the turn is queued."""

    def encode(self, event: SessionEvent) -> list[bytes]:
        """The frames for one event (none for events the API does not show); a
        ``TurnFailed`` is worded as ``failed(failure_problem(event))``."""

    def failed(self, problem: Problem) -> list[bytes]:
        """The frames for a turn that failed (or ended without a result)."""

    def ping(self) -> bytes:
        """A keep-alive frame."""

    def end(self) -> list[bytes]:
        """The last frames of every stream, after its result or failure."""


class Codec(Protocol):
    """An API: parses its requests, words its errors, encodes its replies."""

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> TurnRequest:
        """The ``TurnRequest`` of a request body. Raises ``RequestError``."""

    def error_json(self, problem: Problem) -> dict[str, Any]:
        """The API's error body for a problem."""

    def reply(self, turn_id: str, request: TurnRequest) -> Reply:
        """A new encoder of one turn's answer."""
