"""The HTTP application: routes that turn requests into turns for the supervisor."""

from __future__ import annotations

import importlib.metadata
import logging
import re
import uuid
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors import (
    SessionError,
    Supervisor,
)

from .._logging import request_id_var
from .._settings import Settings
from ..cluster._node import Node
from ..security._auth import AuthError, is_admin, principal_for
from ..security._origin import RequestPolicy
from ..sessions._catalogue import SessionCatalogue
from ..sessions._lineage_index import LineageIndex
from ..sessions._store import SessionStore
from ..wire._anthropic import (
    AnthropicCodec,
    MessagesRequest,
    error_body,
    error_json,
    estimate_tokens,
)
from ..wire._problems import RequestError, describe, problem_for, request_problem
from ._access_log import AccessLog
from ._browser import BrowserGuard
from ._dashboard import dashboard_blueprint, is_dashboard_page
from ._limits import shield_last_send
from ._management import management_blueprint
from ._metrics import Metrics
from ._openai import openai_blueprint
from ._openapi import openapi_document
from ._pipeline import problem_response, serve_turn
from ._requests import json_object
from ._route_docs import TURN_REFUSALS, Doc, Reply, documented
from ._shapes import AnthropicMessage, CountTokensRequest, Health, Service, Stats, TokenCount
from ._websocket import websocket_blueprint

log = logging.getLogger(__name__)
OPEN_PATHS = {"/", "/health", "/openapi.json"}  # answer without an API key
ADMIN_PATHS = {"/v1/stats", "/metrics"}  # need an operator key once keys are configured
ADMIN_PREFIXES = ("/v1/dashboard/",)  # as ADMIN_PATHS, every path under these
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

ANTHROPIC = AnthropicCodec()
try:
    VERSION = importlib.metadata.version("ccactors")
except importlib.metadata.PackageNotFoundError:  # run from a source tree
    VERSION = "0"


def create_app(
    supervisor: Supervisor,
    settings: Settings,
    store: SessionStore | None = None,
    lineage: LineageIndex | None = None,
    node: Node | None = None,
) -> QuartTrio:
    """Build the quart-trio application serving ``supervisor``'s sessions.

    Routes: ``POST /v1/messages`` (Anthropic Messages, streaming and not, through the
    turn pipeline), ``POST /v1/messages/count_tokens``, ``GET /v1/stats``, ``/metrics``,
    ``GET /health``; the OpenAI routes (``app.http._openai``), the management API
    (``app.http._management``), the WebSocket (``app.http._websocket``) and the
    dashboard (``app.http._dashboard``) as blueprints. Every error outside the OpenAI
    routes is Anthropic error JSON with the matching status.

    With API keys configured, ``/v1/stats``, ``/metrics`` and ``/v1/dashboard/...``
    need an operator key (``admin_api_keys``): 401 without a valid key, 403 with a key
    that is not an operator's. Without keys (loopback only) they are open. ``/health``
    tells nothing but that the server answers; the dashboard's page and assets hold no
    data and need no key. A body not received within ``body_read_timeout_s`` is
    answered 408.

    Both HTTP APIs place each turn by its conversation's lineage (``app.http._lineage``)
    in ``lineage``, which the caller loads from ``store`` (``LineageIndex.load``); by
    default a new index over ``store``, empty.

    ``/health`` answers 503 (``{"status": "draining"}``) once the supervisor is closing,
    so a load balancer stops sending requests. With ``node`` (a cluster node), every
    response names it in ``X-Served-By``, ``/v1/stats`` has its counters (``node``,
    leases, hand-offs), and the management API reads and deletes conversations in the
    cluster's shared store, taking a session over from another node to delete it.
    """
    app = QuartTrio(__name__, static_folder=None)  # no /static: every file is a route
    # "/v1/sessions//ws" (an empty session id) is a 404, not a 308 to a path that merges
    # the slashes: a redirect is no answer for a WebSocket handshake or an API call.
    app.url_map.merge_slashes = False
    # One access line per request, when its response is over (a refusal below has its own).
    app.asgi_app = AccessLog(app.asgi_app)
    # Host, Origin and content-type checks against web pages, before any route or hook.
    app.asgi_app = BrowserGuard(app.asgi_app, RequestPolicy.from_settings(settings))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # quart-trio bounds request.get_data() with this (a trickled body gets 408).
    app.config["BODY_TIMEOUT"] = settings.body_read_timeout_s
    app.config["KEY_HASHES"] = key_hashes = settings.key_hashes()
    app.asgi_app = shield_last_send(app.asgi_app)  # type: ignore[method-assign]
    admin_hashes = settings.admin_key_hashes()
    lineage = LineageIndex(store) if lineage is None else lineage
    supervisor.add_observer(lineage)  # a session forgotten leaves the lineage too
    catalogue = SessionCatalogue(
        supervisor, settings.claude_config_dir, store, lineage, cluster=node
    )
    app.register_blueprint(openai_blueprint(supervisor, settings, lineage))
    app.register_blueprint(management_blueprint(supervisor, catalogue, settings))
    app.register_blueprint(websocket_blueprint(supervisor, settings))
    metrics = Metrics(supervisor)
    supervisor.add_observer(metrics)
    app.register_blueprint(dashboard_blueprint(supervisor, catalogue, settings, metrics, node))

    @app.before_request
    async def tag_request() -> None:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else f"req_{uuid.uuid4().hex}"
        request_id_var.set(request_id)
        if request.path not in OPEN_PATHS and not is_dashboard_page(request.path):
            try:
                g.principal = principal_for(request.headers, key_hashes)
            except AuthError as exc:
                raise RequestError(str(exc), status=401) from None
            operator = not key_hashes or is_admin(request.headers, admin_hashes)
            admin = request.path in ADMIN_PATHS or request.path.startswith(ADMIN_PREFIXES)
            if admin and not operator:
                raise RequestError("this endpoint needs an operator (admin) API key", 403)

    @app.after_request
    async def name_response(response: Response) -> Response:
        # The access log (AccessLog, once the response is over) reads the ids here.
        response.headers["request-id"] = request_id_var.get() or ""
        if node is not None:
            response.headers["X-Served-By"] = node.id
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
    @documented(MESSAGES_DOC)
    async def messages() -> Response:
        return await serve_turn(ANTHROPIC, supervisor, settings, lineage)

    @app.post("/v1/messages/count_tokens")
    @documented(COUNT_TOKENS_DOC)
    async def count_tokens() -> dict[str, Any]:
        body = await json_object()
        try:
            CountTokensRequest.model_validate(body)
        except ValidationError as exc:
            raise RequestError(describe(exc)) from None
        return {"input_tokens": estimate_tokens(body)}

    @app.route("/", methods=["GET", "HEAD"])
    @documented(ROOT_DOC)
    async def root() -> dict[str, Any]:
        return {"service": "ccactors", "apis": ["/v1/messages", "/v1/chat/completions"]}

    @app.get("/v1/stats")
    @documented(STATS_DOC)
    async def stats() -> dict[str, Any]:
        figures = supervisor.stats()
        if store is not None:
            figures.update(store.counters())
        if node is not None:
            figures.update(node.stats())
        return figures

    @app.get("/metrics")
    @documented(METRICS_DOC)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), 200, {"Content-Type": CONTENT_TYPE_LATEST})

    @app.get("/health")
    @documented(HEALTH_DOC)
    async def health() -> tuple[dict[str, Any], int]:
        if supervisor.closing:  # shutting down: a load balancer should look elsewhere
            return {"status": "draining"}, 503
        return {"status": "ok"}, 200  # no counts: it answers without a key

    document: dict[str, Any] = {}

    @app.get("/openapi.json")
    @documented(OPENAPI_DOC)
    async def openapi() -> dict[str, Any]:
        if not document:  # built once, when every route is registered
            document.update(openapi_document(app, VERSION))
        return document

    return app


# -- What each route takes and answers (GET /openapi.json) ----------------------------

MESSAGES_DOC = Doc(
    summary="Create a message (Anthropic Messages API)",
    tag="Anthropic",
    description="One turn of a session: `stream: false` answers a Message object, "
    "`stream: true` Anthropic's streaming events with token-level deltas and `ping` "
    "keep-alives (a turn that fails mid-stream ends with an `error` event). Only "
    "`model`, `messages` (text, images, PDFs), `stream`, `system` and `metadata` are "
    "honoured: docs/anthropic.md has the field policy.",
    body=MessagesRequest,
    headers=("X-Session-ID", "X-Claude-Code-Session-Id", "X-Request-ID"),
    examples={
        "message": {
            "model": "claude-sonnet-4-6",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello"}],
        },
        "stream": {
            "model": "claude-sonnet-4-6",
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": "Hello again"}],
        },
    },
    replies=(
        Reply(
            200,
            "The answer: a Message object, or (`stream: true`) its streaming events, as "
            "Anthropic documents them.",
            model=AnthropicMessage,
            events=dict.fromkeys(
                (
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop",
                    "ping",
                    "error",
                )
            ),
            headers=("X-Session-ID",),
        ),
    ),
    refusals=TURN_REFUSALS,
)

COUNT_TOKENS_DOC = Doc(
    summary="Count a request's tokens (an estimate)",
    tag="Anthropic",
    body=CountTokensRequest,
    replies=(Reply(200, "The estimate.", model=TokenCount),),
)

ROOT_DOC = Doc(
    summary="What this server is",
    tag="Service",
    auth="open",
    replies=(Reply(200, "The service and its APIs.", model=Service),),
)

STATS_DOC = Doc(
    summary="Counters for operators",
    tag="Sessions",
    auth="operator",
    replies=(Reply(200, "Sessions, warm pool, mailboxes, restarts, timeouts.", model=Stats),),
)

METRICS_DOC = Doc(
    summary="Prometheus metrics",
    tag="Service",
    auth="operator",
    replies=(
        Reply(
            200,
            "The Prometheus text exposition format (`ccactors_*` metrics).",
            media=("text/plain",),
        ),
    ),
)

HEALTH_DOC = Doc(
    summary="Liveness, for load balancers",
    tag="Service",
    auth="open",
    replies=(
        Reply(200, "The server answers.", model=Health),
        Reply(503, "The server is shutting down (`draining`).", model=Health),
    ),
)

OPENAPI_DOC = Doc(
    summary="This document (OpenAPI 3.1)",
    tag="Service",
    auth="open",
    description="Open like `/health`: it describes the API only, the same for every "
    "server of this version, and holds no settings and no data.",
    replies=(Reply(200, "The OpenAPI document.", model=dict[str, Any]),),
)
