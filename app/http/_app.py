"""The HTTP application: routes that turn requests into turns for the supervisor."""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, TypeVar

import trio
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors import (
    SessionError,
    SessionInfo,
    SessionKey,
    SessionNotFoundError,
    SessionRecord,
    Supervisor,
)

from .._logging import request_id_var
from .._settings import Settings
from ..security._auth import AuthError, is_admin, principal_for
from ..security._origin import RequestPolicy
from ..sessions._store import SessionStore
from ..sessions._transcripts import delete_conversation, read_conversation
from ..wire._anthropic import AnthropicCodec, error_body, error_json, estimate_tokens
from ..wire._events import event_json, event_type
from ..wire._problems import RequestError, problem_for, request_problem
from ..wire._sse import SSE_HEADERS, encode_sse, sse_comment
from ._browser import BrowserGuard
from ._limits import PerKeyCap, shield_last_send
from ._metrics import Metrics
from ._openai import openai_blueprint
from ._pipeline import problem_response, serve_turn, session_key
from ._requests import current_principal, json_object
from ._websocket import websocket_blueprint

log = logging.getLogger(__name__)
OPEN_PATHS = {"/", "/health"}  # answer without an API key (probes)
ADMIN_PATHS = {"/v1/stats", "/metrics"}  # need an operator key once keys are configured
access_log = logging.getLogger("ccactors.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

ANTHROPIC = AnthropicCodec()
T = TypeVar("T")


def create_app(
    supervisor: Supervisor, settings: Settings, store: SessionStore | None = None
) -> QuartTrio:
    """Build the quart-trio application serving ``supervisor``'s sessions.

    Routes: ``POST /v1/messages`` (Anthropic Messages, streaming and not),
    ``GET /v1/sessions``, ``GET /v1/sessions/<id>``, ``POST /v1/sessions/<id>/interrupt``,
    ``GET /v1/sessions/<id>/events`` (SSE), ``GET /v1/stats``, ``GET /health``. Every
    error is Anthropic error JSON with the matching status.

    With API keys configured, ``/v1/stats`` and ``/metrics`` need an operator key
    (``admin_api_keys``): 401 without a valid key, 403 with a key that is not an
    operator's. Without keys (loopback only) they are open. ``/health`` tells nothing
    but that the server answers. A body not received within ``body_read_timeout_s``
    is answered 408.
    """
    app = QuartTrio(__name__)
    # Host, Origin and content-type checks against web pages, before any route or hook.
    app.asgi_app = BrowserGuard(app.asgi_app, RequestPolicy.from_settings(settings))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # quart-trio bounds request.get_data() with this (a trickled body gets 408).
    app.config["BODY_TIMEOUT"] = settings.body_read_timeout_s
    app.config["KEY_HASHES"] = key_hashes = settings.key_hashes()
    app.asgi_app = shield_last_send(app.asgi_app)  # type: ignore[method-assign]
    admin_hashes = settings.admin_key_hashes()
    listeners = PerKeyCap(settings.max_listeners_per_key, "event listeners")
    app.register_blueprint(openai_blueprint(supervisor, settings))
    app.register_blueprint(websocket_blueprint(supervisor, settings))
    metrics = Metrics(supervisor)
    supervisor.add_observer(metrics)

    @app.before_request
    async def tag_request() -> None:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else f"req_{uuid.uuid4().hex}"
        request_id_var.set(request_id)
        g.started = time.monotonic()
        if request.path not in OPEN_PATHS:
            try:
                g.principal = principal_for(request.headers, key_hashes)
            except AuthError as exc:
                raise RequestError(str(exc), status=401) from None
            operator = not key_hashes or is_admin(request.headers, admin_hashes)
            if request.path in ADMIN_PATHS and not operator:
                raise RequestError("this endpoint needs an operator (admin) API key", 403)

    @app.after_request
    async def log_access(response: Response) -> Response:
        response.headers["request-id"] = request_id_var.get() or ""
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - g.started) * 1000, 1),
                "session_id": response.headers.get("X-Session-ID"),
                "client": request.remote_addr,
            },
        )
        return response

    @app.errorhandler(RequestError)
    async def request_error(exc: RequestError) -> Response:
        return problem_response(request_problem(exc), error_json)

    @app.errorhandler(SessionError)
    async def session_error(exc: SessionError) -> Response:
        return problem_response(problem_for(exc), error_json)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[dict[str, Any], int]:
        status = exc.code or 500
        return error_body(status, exc.description or exc.name), status

    @app.post("/v1/messages")
    async def messages() -> Response:
        return await serve_turn(ANTHROPIC, supervisor, settings)

    @app.post("/v1/messages/count_tokens")
    async def count_tokens() -> dict[str, Any]:
        body = await json_object()
        if not isinstance(body.get("messages"), list):
            raise RequestError("messages: a list of messages is required")
        return {"input_tokens": estimate_tokens(body)}

    @app.route("/", methods=["GET", "HEAD"])
    async def root() -> dict[str, Any]:
        return {"service": "ccactors", "apis": ["/v1/messages", "/v1/chat/completions"]}

    @app.get("/v1/sessions")
    async def list_sessions() -> dict[str, Any]:
        principal = current_principal()
        mine = {i.session_id: i for i in supervisor.sessions() if i.principal == principal}
        if store is not None:  # sessions known from before a restart, not running yet
            for record in await store.records(principal):
                mine.setdefault(record.key.session_id, _resting(record))
        return _page(
            sorted(mine.values(), key=lambda i: (i.created_at, i.session_id)), request.args
        )

    async def known(session_id: str) -> SessionInfo:
        """A session of the caller: running, or known from before a restart; else 404."""
        key = _key(session_id)
        info = supervisor.session(key)
        if info is None and store is not None and (record := await store.load(key)):
            info = _resting(record)
        if info is None:
            raise SessionNotFoundError(f"no session {session_id!r}")
        return info

    @app.get("/v1/sessions/<session_id>")
    async def get_session(session_id: str) -> dict[str, Any]:
        return _session_json(await known(session_id))

    @app.delete("/v1/sessions/<session_id>")
    async def delete_session(session_id: str) -> dict[str, Any]:
        key = _key(session_id)
        try:
            claude_session_id = (await supervisor.close_session(key)).claude_session_id
        except SessionNotFoundError:
            # Not running now, but perhaps known from before a restart.
            known = None if store is None else await store.load(key)
            if known is None:
                raise
            claude_session_id = known.claude_session_id
            await trio.to_thread.run_sync(shutil.rmtree, known.cwd, True)
        if store is not None:
            await store.delete(key)
        deleted = 0
        if claude_session_id:
            deleted = await trio.to_thread.run_sync(
                delete_conversation, settings.claude_config_dir, claude_session_id
            )
        return {"id": session_id, "type": "session_deleted", "transcripts_deleted": deleted}

    @app.get("/v1/sessions/<session_id>/messages")
    async def session_messages(session_id: str) -> dict[str, Any]:
        info = await known(session_id)
        messages = []
        if info.claude_session_id:
            messages = await trio.to_thread.run_sync(
                read_conversation, settings.claude_config_dir, info.claude_session_id
            )
        return {"id": session_id, "claude_session_id": info.claude_session_id, "data": messages}

    @app.post("/v1/sessions/<session_id>/interrupt")
    async def interrupt(session_id: str) -> dict[str, Any]:
        return {"id": session_id, "interrupted": supervisor.interrupt(_key(session_id))}

    @app.get("/v1/sessions/<session_id>/events")
    async def session_events(session_id: str) -> Response:
        stream = _listen(supervisor, _key(session_id), settings.sse_ping_interval_s, listeners)
        await anext(stream)  # SessionNotFoundError -> 404, over the cap -> 429, while we can
        response = Response(stream, 200, SSE_HEADERS)
        response.timeout = None
        return response

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        return supervisor.stats()

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), 200, {"Content-Type": CONTENT_TYPE_LATEST})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}  # no counts: it answers without a key

    return app


async def _listen(
    supervisor: Supervisor, key: SessionKey, ping_s: float, cap: PerKeyCap
) -> AsyncIterator[bytes]:
    """The SSE body of a session's event stream; first yields ``b""`` once listening.

    Each event is ``event: <type>`` with its JSON (see ``app.wire._events``); a listener too
    slow to keep up gets a ``lagged`` event saying how many it lost. Counts against the
    key's ``cap`` of listeners while it runs (``PrincipalLimitError`` at the first item
    if the key is at its cap).
    """
    with cap.hold(key.principal), supervisor.listen(key) as events:
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


def _page(infos: list[SessionInfo], args: Any) -> dict[str, Any]:
    """One page of sessions, oldest first, in Anthropic's list shape.

    Query parameters: ``limit`` (1..1000, default 100), ``after_id`` (the last id of the
    previous page), ``state`` (one of ``SESSION_STATES``; ``live`` and ``hibernated``
    filter on whether a CLI is running). Raises ``RequestError`` for bad values.
    """
    state = args.get("state")
    if state is not None and state not in SESSION_STATES:
        raise RequestError(f"state must be one of {', '.join(SESSION_STATES)}")
    try:
        limit = int(args.get("limit", 100))
    except ValueError:
        raise RequestError("limit must be an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise RequestError(f"limit must be between 1 and {MAX_PAGE}")
    if state in ("live", "hibernated"):
        infos = [i for i in infos if i.live == (state == "live")]
    elif state is not None:
        infos = [i for i in infos if i.state == state]
    if (after := args.get("after_id")) is not None:
        ids = [i.session_id for i in infos]
        if after not in ids:
            raise RequestError(f"after_id {after!r} is not a listed session")
        infos = infos[ids.index(after) + 1 :]
    page = infos[:limit]
    return {
        "data": [_session_json(info) for info in page],
        "has_more": len(infos) > limit,
        "first_id": page[0].session_id if page else None,
        "last_id": page[-1].session_id if page else None,
    }


def _resting(record: SessionRecord) -> SessionInfo:
    """A session known from the store but not running: idle and hibernated."""
    return SessionInfo(
        session_id=record.key.session_id,
        principal=record.key.principal,
        state="idle",
        live=False,
        cli_pid=None,
        claude_session_id=record.claude_session_id,
        turns=record.turns,
        restarts=0,
        last_error=None,
        created_at=record.created_at,
        last_active_at=record.last_active_at,
        mailbox_depth=0,
        listeners=0,
        one_turn=False,
    )


def _key(session_id: str) -> SessionKey:
    """A session id from a URL as the caller's key. Raises ``RequestError`` (400) if
    malformed."""
    return session_key(session_id, current_principal())


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _session_json(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.session_id,
        "state": info.state,
        "live": info.live,
        "hibernated": not info.live,
        "cli_pid": info.cli_pid,
        "claude_session_id": info.claude_session_id,
        "turns": info.turns,
        "restarts": info.restarts,
        "last_error": info.last_error,
        "listeners": info.listeners,
        "created_at": _iso(info.created_at),
        "last_active_at": _iso(info.last_active_at),
        "mailbox_depth": info.mailbox_depth,
    }
