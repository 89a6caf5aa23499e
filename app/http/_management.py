"""The management API: a caller's sessions, listed, inspected, interrupted, followed and
deleted.

Routes: ``GET /v1/sessions`` (a page, Anthropic's list shape), ``GET /v1/sessions/<id>``,
``DELETE /v1/sessions/<id>``, ``GET /v1/sessions/<id>/messages``,
``POST /v1/sessions/<id>/interrupt``, ``GET /v1/sessions/<id>/events`` (SSE). Errors are
the app's (Anthropic error JSON). What a session is, and deleting one everywhere, is the
session catalogue's (``app.sessions._catalogue``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import trio
from pydantic import BaseModel, Field, ValidationError
from quart import Blueprint, Response, request

from actors import (
    Lagged,
    PermissionRequest,
    SessionInfo,
    SessionKey,
    Supervisor,
    TextDelta,
    ThinkingDelta,
    ToolResult,
    ToolUse,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
)

from .._settings import Settings
from ..sessions._catalogue import SessionCatalogue
from ..sessions._lineage_index import LineageIndex
from ..wire._events import event_json, event_type
from ..wire._problems import RequestError, describe
from ..wire._sse import SSE_HEADERS, encode_sse, sse_comment
from ._limits import PerKeyCap
from ._requests import current_principal
from ._route_docs import Doc, Reply, documented
from ._session_ids import session_key
from ._shapes import Interrupted, Session, SessionDeleted, SessionMessages, SessionPage

T = TypeVar("T")


def management_blueprint(
    supervisor: Supervisor, catalogue: SessionCatalogue, settings: Settings
) -> Blueprint:
    """The management routes, as a blueprint for ``create_app`` to register.

    Args:
        supervisor: runs the sessions (interrupts, event streams).
        catalogue: the caller's sessions, running or resting; deletes them.
        settings: ``max_listeners_per_key`` and ``sse_ping_interval_s`` (seconds of
            quiet before a keep-alive comment on an event stream).

    Returns:
        A new ``quart.Blueprint`` named ``management``.
    """
    blueprint = Blueprint("management", __name__)
    listeners = PerKeyCap(settings.max_listeners_per_key, "event listeners")

    @blueprint.get("/v1/sessions")
    @documented(LIST_DOC)
    async def list_sessions() -> dict[str, Any]:
        query = page_query(PageQuery, request.args)
        return _page(await catalogue.sessions(current_principal()), query, catalogue.lineage)

    @blueprint.get("/v1/sessions/<session_id>")
    @documented(SESSION_DOC)
    async def get_session(session_id: str) -> dict[str, Any]:
        return _session_json(await catalogue.session(_key(session_id)), catalogue.lineage)

    @blueprint.delete("/v1/sessions/<session_id>")
    @documented(DELETE_DOC)
    async def delete_session(session_id: str) -> dict[str, Any]:
        deleted = await catalogue.delete(_key(session_id))
        return {"id": session_id, "type": "session_deleted", "transcripts_deleted": deleted}

    @blueprint.get("/v1/sessions/<session_id>/messages")
    @documented(MESSAGES_DOC)
    async def session_messages(session_id: str) -> dict[str, Any]:
        info = await catalogue.session(_key(session_id))
        messages = await catalogue.messages(info)
        return {"id": session_id, "claude_session_id": info.claude_session_id, "data": messages}

    @blueprint.post("/v1/sessions/<session_id>/interrupt")
    @documented(INTERRUPT_DOC)
    async def interrupt(session_id: str) -> dict[str, Any]:
        return {"id": session_id, "interrupted": supervisor.interrupt(_key(session_id))}

    @blueprint.get("/v1/sessions/<session_id>/events")
    @documented(EVENTS_DOC)
    async def session_events(session_id: str) -> Response:
        stream = _listen(supervisor, _key(session_id), settings.sse_ping_interval_s, listeners)
        await anext(stream)  # SessionNotFoundError -> 404, over the cap -> 429, while we can
        response = Response(stream, 200, SSE_HEADERS)
        response.timeout = None
        return response

    return blueprint


async def _listen(
    supervisor: Supervisor,
    key: SessionKey,
    ping_s: float,
    cap: PerKeyCap,
    holder: str | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body of a session's event stream; first yields ``b""`` once listening.

    Each event is ``event: <type>`` with its JSON (see ``app.wire._events``); a listener too
    slow to keep up gets a ``lagged`` event saying how many it lost. Counts against the
    ``cap`` of listeners of ``holder`` (the principal listening; default the session's
    own) while it runs (``PrincipalLimitError`` at the first item if it is at its cap).
    """
    with cap.hold(key.principal if holder is None else holder), supervisor.listen(key) as events:
        yield b""
        async with aclosing(_with_keepalive(events, ping_s)) as ticks:
            async for event in ticks:
                if event is None:
                    yield sse_comment("ping")
                else:
                    yield encode_sse(event_type(event), event_json(event))


async def _with_keepalive(
    events: trio.MemoryReceiveChannel[T], seconds: float
) -> AsyncIterator[T | None]:
    """Items of ``events`` until it ends, and ``None`` after each ``seconds`` of quiet
    (time for a keep-alive). Yields outside its cancel scope, as async generators must."""
    while True:
        event = None
        with trio.move_on_after(seconds):
            try:
                event = await events.receive()
            except trio.EndOfChannel:
                return
        yield event


SESSION_STATES = ("starting", "idle", "busy", "closing", "live", "hibernated")
MAX_PAGE = 1000


class PageQuery(BaseModel):
    """The query string of ``GET /v1/sessions``: which page of which sessions."""

    limit: int = Field(100, ge=1, le=MAX_PAGE, description="sessions on the page")
    after_id: str | None = Field(
        None, description="the `last_id` of the previous page: this page starts after it"
    )
    state: Literal[SESSION_STATES] | None = Field(  # type: ignore[valid-type]
        None,
        description="only sessions in this state; `live` and `hibernated`: whether a CLI "
        "process is running for them",
    )


Q = TypeVar("Q", bound=PageQuery)


def page_query(model: type[Q], args: Any) -> Q:
    """A request's query string (``request.args``) as ``model``; unknown parameters are
    ignored. Not a checkpoint.

    Raises:
        RequestError: a parameter is malformed (400, naming it).
    """
    try:
        return model.model_validate(args.to_dict())
    except ValidationError as exc:
        raise RequestError(describe(exc, root="query")) from None


def _page(
    infos: list[SessionInfo],
    query: PageQuery,
    lineage: LineageIndex | None,
    *,
    ident: Callable[[SessionInfo], str] = lambda info: info.session_id,
    render: Callable[[SessionInfo], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One page of sessions, oldest first, in Anthropic's list shape, as ``query`` asks
    (``state``: ``live`` and ``hibernated`` filter on whether a CLI is running).

    ``ident`` names a session for ``after_id``, ``first_id`` and ``last_id`` (default its
    id); ``render`` makes its JSON (default ``_session_json`` with ``lineage``). Raises
    ``RequestError`` if ``after_id`` is not a listed session.
    """
    state, limit = query.state, query.limit
    if state in ("live", "hibernated"):
        infos = [i for i in infos if i.live == (state == "live")]
    elif state is not None:
        infos = [i for i in infos if i.state == state]
    if (after := query.after_id) is not None:
        ids = [ident(i) for i in infos]
        if after not in ids:
            raise RequestError(f"after_id {after!r} is not a listed session")
        infos = infos[ids.index(after) + 1 :]
    page = infos[:limit]
    return {
        "data": [render(info) if render else _session_json(info, lineage) for info in page],
        "has_more": len(infos) > limit,
        "first_id": ident(page[0]) if page else None,
        "last_id": ident(page[-1]) if page else None,
    }


def _key(session_id: str) -> SessionKey:
    """A session id from a URL as the caller's key. Raises ``RequestError`` (400) if
    malformed."""
    return session_key(session_id, current_principal())


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _session_json(info: SessionInfo, lineage: LineageIndex | None = None) -> dict[str, Any]:
    """A session as the management API shows it. With a lineage index: ``parent`` (the
    session ``id`` and ``turn`` it forked from, or ``null``) and ``lineage_head`` (its
    latest completed turn's ``turn`` count and lineage ``hash``, or ``null``)."""
    parent = head = None
    if lineage is not None:
        parent = lineage.parent(info.principal, info.session_id)
        head = lineage.head(info.principal, info.session_id)
    return {
        "id": info.session_id,
        "state": info.state,
        "live": info.live,
        "hibernated": not info.live,
        "cli_pid": info.cli_pid,
        "claude_session_id": info.claude_session_id,
        "model": info.model,
        "turns": info.turns,
        "restarts": info.restarts,
        "last_error": info.last_error,
        "listeners": info.listeners,
        "created_at": _iso(info.created_at),
        "last_active_at": _iso(info.last_active_at),
        "mailbox_depth": info.mailbox_depth,
        "parent": None if parent is None else {"id": parent.session_id, "turn": parent.turn},
        "lineage_head": None if head is None else {"turn": head.turn, "hash": head.hash},
    }


# -- What each route takes and answers (GET /openapi.json) ----------------------------

SESSION_ID = {"session_id": "A session id of the caller's."}
SESSION_EVENTS = {
    "turn_started": TurnStarted,
    "text_delta": TextDelta,
    "thinking_delta": ThinkingDelta,
    "tool_use": ToolUse,
    "tool_result": ToolResult,
    "turn_completed": TurnCompleted,
    "turn_failed": TurnFailed,
    "permission_request": PermissionRequest,
    "lagged": Lagged,
}
NOT_FOUND = {404: "No such session (of this caller)."}
# Deleting a session another node drives: it is taken over first (cluster).
NOT_HANDED_OVER = {
    503: "In a cluster: another node drives the session and did not hand it over in "
    "time; see `Retry-After`.",
}

LIST_DOC = Doc(
    summary="List the caller's sessions",
    tag="Sessions",
    query=PageQuery,
    replies=(Reply(200, "One page of sessions, oldest first.", model=SessionPage),),
)
SESSION_DOC = Doc(
    summary="One session",
    tag="Sessions",
    params=SESSION_ID,
    replies=(Reply(200, "The session.", model=Session),),
    refusals=NOT_FOUND,
)
DELETE_DOC = Doc(
    summary="Close and forget a session",
    tag="Sessions",
    description="Its CLI, working directory, record, lineage and transcripts; its forks "
    "keep their own conversations.",
    params=SESSION_ID,
    replies=(Reply(200, "Deleted.", model=SessionDeleted),),
    refusals={**NOT_FOUND, **NOT_HANDED_OVER},
)
MESSAGES_DOC = Doc(
    summary="A session's conversation so far",
    tag="Sessions",
    params=SESSION_ID,
    replies=(Reply(200, "Its messages, from its CLI's transcript.", model=SessionMessages),),
    refusals=NOT_FOUND,
)
INTERRUPT_DOC = Doc(
    summary="Stop the session's running turn",
    tag="Sessions",
    description="Its caller gets an `error` event (or `409` if not streaming).",
    params=SESSION_ID,
    replies=(Reply(200, "Whether a turn was running.", model=Interrupted),),
    refusals=NOT_FOUND,
)
EVENTS_DOC = Doc(
    summary="Follow a session's events (server-sent events)",
    tag="Sessions",
    description="Every event of the session's turns, for any number of listeners, with "
    "`: ping` comments after `sse_ping_interval_s` of quiet; it does not end by itself. "
    "Each event's data is its JSON with its `type`.",
    params=SESSION_ID,
    replies=(Reply(200, "The stream.", events=SESSION_EVENTS),),
    refusals={
        **NOT_FOUND,
        429: "The key has `max_listeners_per_key` streams open; see `Retry-After`.",
    },
)
