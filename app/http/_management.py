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
from typing import Any, TypeVar

import trio
from quart import Blueprint, Response, request

from actors import SessionInfo, SessionKey, Supervisor

from .._settings import Settings
from ..sessions._catalogue import SessionCatalogue
from ..sessions._lineage_index import LineageIndex
from ..wire._events import event_json, event_type
from ..wire._problems import RequestError
from ..wire._sse import SSE_HEADERS, encode_sse, sse_comment
from ._limits import PerKeyCap
from ._pipeline import session_key
from ._requests import current_principal

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
    async def list_sessions() -> dict[str, Any]:
        return _page(await catalogue.sessions(current_principal()), request.args, catalogue.lineage)

    @blueprint.get("/v1/sessions/<session_id>")
    async def get_session(session_id: str) -> dict[str, Any]:
        return _session_json(await catalogue.session(_key(session_id)), catalogue.lineage)

    @blueprint.delete("/v1/sessions/<session_id>")
    async def delete_session(session_id: str) -> dict[str, Any]:
        deleted = await catalogue.delete(_key(session_id))
        return {"id": session_id, "type": "session_deleted", "transcripts_deleted": deleted}

    @blueprint.get("/v1/sessions/<session_id>/messages")
    async def session_messages(session_id: str) -> dict[str, Any]:
        info = await catalogue.session(_key(session_id))
        messages = await catalogue.messages(info)
        return {"id": session_id, "claude_session_id": info.claude_session_id, "data": messages}

    @blueprint.post("/v1/sessions/<session_id>/interrupt")
    async def interrupt(session_id: str) -> dict[str, Any]:
        return {"id": session_id, "interrupted": supervisor.interrupt(_key(session_id))}

    @blueprint.get("/v1/sessions/<session_id>/events")
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


def _page(
    infos: list[SessionInfo],
    args: Any,
    lineage: LineageIndex | None,
    *,
    ident: Callable[[SessionInfo], str] = lambda info: info.session_id,
    render: Callable[[SessionInfo], dict[str, Any]] | None = None,
    max_limit: int = MAX_PAGE,
) -> dict[str, Any]:
    """One page of sessions, oldest first, in Anthropic's list shape.

    Query parameters: ``limit`` (1..``max_limit``, default 100 or ``max_limit`` if
    smaller), ``after_id`` (the last id of the previous page), ``state`` (one of
    ``SESSION_STATES``; ``live`` and ``hibernated`` filter on whether a CLI is running).
    ``ident`` names a session for ``after_id``, ``first_id`` and ``last_id`` (default its
    id); ``render`` makes its JSON (default ``_session_json`` with ``lineage``). Raises
    ``RequestError`` for bad values.
    """
    state = args.get("state")
    if state is not None and state not in SESSION_STATES:
        raise RequestError(f"state must be one of {', '.join(SESSION_STATES)}")
    try:
        limit = int(args.get("limit", min(100, max_limit)))
    except ValueError:
        raise RequestError("limit must be an integer") from None
    if not 1 <= limit <= max_limit:
        raise RequestError(f"limit must be between 1 and {max_limit}")
    if state in ("live", "hibernated"):
        infos = [i for i in infos if i.live == (state == "live")]
    elif state is not None:
        infos = [i for i in infos if i.state == state]
    if (after := args.get("after_id")) is not None:
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
