"""What a route declares about itself for the OpenAPI document: its operation (``Doc``)
and responses (``Reply``), attached to the route function with ``documented`` (or
``not_documented``, saying why it is no API operation), and the words for the error
statuses a route can answer (``ERROR_TEXT``, and ``TURN_REFUSALS`` for the turn routes).

The routes import from here to describe themselves; ``app.http._openapi`` walks the
application's URL map, reads these declarations and builds the document from them. The
tables these docstrings name but do not define here (``REQUEST_HEADERS``,
``RESPONSE_HEADERS``, ``error_statuses``) are that module's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__openapi__"
SKIPPED = "__openapi_skipped__"

Auth = Literal["open", "key", "operator"]


@dataclass(frozen=True)
class Reply:
    """One documented response of an operation.

    Attributes:
        status: the HTTP status.
        description: when and what, for people.
        model: the type of its JSON body (a pydantic model, or any type pydantic can
            describe), or ``None``.
        events: for a server-sent events body (``text/event-stream``), each event's name
            and the type of its data (``None``: described in ``description``); offered
            alongside a JSON ``model`` when the request chooses (``stream``).
        media: the media types of a body that is neither JSON nor events (e.g.
            ``text/html``), one of which the route answers with.
        headers: response headers it carries, names of ``RESPONSE_HEADERS``.
    """

    status: int
    description: str
    model: Any = None
    events: dict[str, Any] | None = None
    media: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Doc:
    """What one route takes and answers: its OpenAPI operation.

    Attributes:
        summary: one line.
        tag: its group (``Anthropic``, ``OpenAI``, ``Sessions``, ``Dashboard``,
            ``Service``).
        replies: its successful (and other particular) responses.
        description: more, for people (Markdown).
        body: the pydantic model that validates its JSON body, if it takes one.
        query: the pydantic model that validates its query string, if any.
        headers: request headers it reads, names of ``REQUEST_HEADERS``.
        auth: ``open`` (no key ever), ``key`` (any API key once keys are configured) or
            ``operator`` (an operator key once keys are configured).
        errors: whose error body it answers with: ``anthropic`` or ``openai``.
        refusals: error statuses particular to it, with when (the statuses every route
            of its kind can answer are added: see ``error_statuses``).
        params: path parameters: a description each (``session_id`` also gets the
            session id pattern).
        websocket: for the WebSocket route, ``{"client": [types], "server": [types]}``.
        examples: example bodies, by name (shown by the document's readers, and sent
            first by schemathesis).
    """

    summary: str
    tag: str
    replies: tuple[Reply, ...]
    description: str = ""
    body: Any = None
    query: Any = None
    headers: tuple[str, ...] = ()
    auth: Auth = "key"
    errors: Literal["anthropic", "openai"] = "anthropic"
    refusals: dict[int, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    websocket: dict[str, list[Any]] | None = None
    examples: dict[str, Any] = field(default_factory=dict)


def documented(doc: Doc) -> Callable[[F], F]:
    """Attach ``doc`` to a route function (put it below the route decorator). Not a
    checkpoint."""

    def attach(function: F) -> F:
        setattr(function, ATTRIBUTE, doc)
        return function

    return attach


def not_documented(reason: str) -> Callable[[F], F]:
    """Mark a route function as no API operation, saying why (e.g. it only answers 405
    in its API's error format for methods the API does not have). Not a checkpoint."""

    def attach(function: F) -> F:
        setattr(function, SKIPPED, reason)
        return function

    return attach


# The error statuses, and when a route answers them. ``error_statuses``
# (``app.http._openapi``) picks those that apply to an operation from what it declares.
ERROR_TEXT = {
    400: "The request is malformed, or asks for what cannot be honoured.",
    401: "No valid API key (only once API keys are configured).",
    403: "A web page's `Origin` that is not allowed.",
    404: "No such session (of this caller).",
    408: "The request body did not arrive within `body_read_timeout_s`.",
    413: "The request body is over `max_body_bytes`, or an image or document is over its limit.",
    415: "The request body is not `Content-Type: application/json`.",
    421: "A `Host` that is not this server's.",
    429: "Too many turns waiting on the session, or the key is over one of its limits; "
    "see `Retry-After`.",
    503: "No capacity (every live CLI busy for `live_slot_wait_s`), the session closed, "
    "or the server is shutting down; see `Retry-After` when given.",
}
# What a turn (over either HTTP API) can be refused or fail with, besides a bad request.
TURN_REFUSALS = {
    409: "The turn was interrupted (`POST /v1/sessions/{session_id}/interrupt`).",
    429: ERROR_TEXT[429],
    502: "The CLI could not start or failed, or its upstream refused the turn.",
    503: ERROR_TEXT[503],
    504: "The CLI sent nothing within `first_chunk_timeout_s`, or went silent mid-turn "
    "for `stream_idle_timeout_s`.",
}
OPERATOR_403 = (
    "A web page's `Origin` that is not allowed, or a key that is not an operator's "
    "(only once API keys are configured)."
)
