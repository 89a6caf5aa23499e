"""The operator's dashboard: one page with its assets, and the operator routes it reads.

Pages, open to anyone because they hold no data: ``GET /dashboard`` (one HTML page whose
script routes by URL fragment: ``#/`` the overview and sessions table,
``#/sessions/<owner>/<id>`` one session) and ``GET /dashboard/assets/<name>`` (a fixed
list of files from ``app/dashboard/``). They carry a strict ``Content-Security-Policy``
(only this server's own scripts, styles and requests; no inline script, no framing).

Data, for operators (with API keys configured, an operator key is needed: see
``create_app``; on a loopback server without keys, open):

* ``GET /v1/dashboard/overview``: the overview figures (``app.http._overview``).
* ``GET /v1/dashboard/stream``: SSE, a ``snapshot`` event (``overview`` and
  ``sessions``, one page of every principal's sessions; query ``state``, ``limit`` at
  most ``MAX_SNAPSHOT_PAGE``, default ``DEFAULT_SNAPSHOT_PAGE``, and ``after_id``, as
  ``GET /v1/sessions`` takes them) at once and again whenever it changes, looked at
  every ``SNAPSHOT_INTERVAL_S``; ``:`` keep-alive comments in between. If the session
  named by ``after_id`` goes away, an ``error`` event (Anthropic error JSON) ends the
  stream.
* ``GET /v1/dashboard/sessions/<owner>/<id>``: ``{"session": ..., "messages": [...]}``,
  the session and its conversation from the CLI's transcript.
* ``GET /v1/dashboard/sessions/<owner>/<id>/events``: the session's live events (SSE,
  as ``GET /v1/sessions/<id>/events``).
* ``POST /v1/dashboard/sessions/<owner>/<id>/interrupt``, ``DELETE
  /v1/dashboard/sessions/<owner>/<id>``: as the management API's.

An operator sees every principal's sessions. A session is addressed as
``<owner>/<id>``: ``owner`` is its principal (16 hex digits, the digest of its API
key) or ``-`` for the empty principal (auth off). Its JSON is the management API's plus
``owner`` and ``address`` (``<owner>/<id>``, also the snapshot's ``after_id``,
``first_id`` and ``last_id``). Streams count against the operator's
``max_listeners_per_key``. Errors are Anthropic error JSON: a malformed owner or id is
400, an unknown session 404.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from pydantic import Field
from quart import Blueprint, Response, request

from actors import SessionInfo, SessionKey, Supervisor

from .._settings import Settings
from ..cluster._node import Node
from ..security._auth import PRINCIPAL_BYTES
from ..sessions._catalogue import SessionCatalogue
from ..sessions._lineage_index import LineageIndex
from ..wire._anthropic import error_body
from ..wire._problems import RequestError
from ..wire._sse import SSE_HEADERS, encode_sse, sse_comment
from ._limits import PerKeyCap
from ._management import (
    NOT_FOUND,
    NOT_HANDED_OVER,
    SESSION_EVENTS,
    PageQuery,
    _listen,
    _page,
    _session_json,
    page_query,
)
from ._metrics import Metrics
from ._overview import TurnRate, overview
from ._requests import current_principal
from ._route_docs import Doc, Reply, documented
from ._session_ids import session_key
from ._shapes import (
    AnthropicError,
    DashboardConversation,
    DashboardDeleted,
    DashboardInterrupted,
    Overview,
    Snapshot,
)

ASSET_DIR = Path(__file__).resolve().parent.parent / "dashboard"
PAGE = "index.html"
# Every file served under /dashboard/assets/, with its type: nothing else is.
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
SNAPSHOT_INTERVAL_S = 1.0
DEFAULT_SNAPSHOT_PAGE = 50
MAX_SNAPSHOT_PAGE = 100
NO_OWNER = "-"  # the empty principal (auth off)


class SnapshotQuery(PageQuery):
    """The query string of ``GET /v1/dashboard/stream``: as ``GET /v1/sessions``'s, over
    every principal's sessions, with smaller pages."""

    limit: int = Field(
        DEFAULT_SNAPSHOT_PAGE, ge=1, le=MAX_SNAPSHOT_PAGE, description="sessions on the page"
    )
    after_id: str | None = Field(
        None, description="the `last_id` (an address) of the previous page"
    )


_OWNER = re.compile(f"[0-9a-f]{{{2 * PRINCIPAL_BYTES}}}")


def is_dashboard_page(path: str) -> bool:
    """Whether ``path`` is the dashboard page or one of its assets (open: no data).
    Not a checkpoint."""
    return path == "/dashboard" or path.startswith("/dashboard/assets/")


def dashboard_blueprint(
    supervisor: Supervisor,
    catalogue: SessionCatalogue,
    settings: Settings,
    metrics: Metrics,
    node: Node | None = None,
) -> Blueprint:
    """The dashboard's page, assets and operator routes, as a blueprint for
    ``create_app`` to register (which also applies the operator-key rule).

    Reads the page and assets once, here; adds a ``TurnRate`` observer to ``supervisor``.

    Args:
        supervisor: runs the sessions (stats, interrupts, event streams).
        catalogue: every principal's sessions, running or resting; deletes them.
        settings: limits shown in the overview, ``max_listeners_per_key`` and
            ``sse_ping_interval_s``.
        metrics: the ``/metrics`` figures (the first-token latency histogram).
        node: this server's cluster node, if it is one (every node in the overview).

    Returns:
        A new ``quart.Blueprint`` named ``dashboard``.

    Raises:
        OSError: a dashboard file is missing from the installation.
    """
    blueprint = Blueprint("dashboard", __name__)
    files = {name: (ASSET_DIR / name).read_bytes() for name in (PAGE, *ASSETS)}
    streams = PerKeyCap(settings.max_listeners_per_key, "dashboard streams")
    rate = TurnRate()
    supervisor.add_observer(rate)

    def figures() -> dict[str, Any]:
        return overview(supervisor, settings, metrics.time_to_first_token, rate, node)

    def render(info: SessionInfo) -> dict[str, Any]:
        return _dashboard_json(info, catalogue.lineage, node)

    async def snapshot(query: SnapshotQuery) -> dict[str, Any]:
        sessions = _page(
            await catalogue.all_sessions(),
            query,
            catalogue.lineage,
            ident=_address,
            render=render,
        )
        return {"overview": figures(), "sessions": sessions}

    @blueprint.get("/dashboard")
    @documented(PAGE_DOC)
    async def page() -> Response:
        return _static(files[PAGE], "text/html; charset=utf-8")

    @blueprint.get("/dashboard/assets/<name>")
    @documented(ASSET_DOC)
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise RequestError(f"no dashboard asset {name!r}", 404)
        return _static(files[name], ASSETS[name])

    @blueprint.get("/v1/dashboard/overview")
    @documented(OVERVIEW_DOC)
    async def overview_json() -> dict[str, Any]:
        return figures()

    @blueprint.get("/v1/dashboard/stream")
    @documented(STREAM_DOC)
    async def stream() -> Response:
        query = page_query(SnapshotQuery, request.args)
        first = await snapshot(query)  # a bad query is a 400 while we can
        body = _snapshots(
            first,
            lambda: snapshot(query),
            settings.sse_ping_interval_s,
            streams,
            current_principal(),
        )
        await anext(body)  # over the cap -> 429
        response = Response(body, 200, SSE_HEADERS)
        response.timeout = None
        return response

    @blueprint.get("/v1/dashboard/sessions/<owner>/<session_id>")
    @documented(SESSION_DOC)
    async def session(owner: str, session_id: str) -> dict[str, Any]:
        info = await catalogue.session(_key(owner, session_id))
        return {"session": render(info), "messages": await catalogue.messages(info)}

    @blueprint.get("/v1/dashboard/sessions/<owner>/<session_id>/events")
    @documented(EVENTS_DOC)
    async def session_events(owner: str, session_id: str) -> Response:
        key = _key(owner, session_id)
        ping_s = settings.sse_ping_interval_s
        body = _listen(supervisor, key, ping_s, streams, holder=current_principal())
        await anext(body)  # SessionNotFoundError -> 404, over the cap -> 429
        response = Response(body, 200, SSE_HEADERS)
        response.timeout = None
        return response

    @blueprint.post("/v1/dashboard/sessions/<owner>/<session_id>/interrupt")
    @documented(INTERRUPT_DOC)
    async def interrupt(owner: str, session_id: str) -> dict[str, Any]:
        interrupted = supervisor.interrupt(_key(owner, session_id))
        return {"id": session_id, "owner": owner, "interrupted": interrupted}

    @blueprint.delete("/v1/dashboard/sessions/<owner>/<session_id>")
    @documented(DELETE_DOC)
    async def delete(owner: str, session_id: str) -> dict[str, Any]:
        deleted = await catalogue.delete(_key(owner, session_id))
        return {
            "id": session_id,
            "owner": owner,
            "type": "session_deleted",
            "transcripts_deleted": deleted,
        }

    return blueprint


async def _snapshots(
    first: dict[str, Any],
    make: Callable[[], Awaitable[dict[str, Any]]],
    ping_s: float,
    cap: PerKeyCap,
    holder: str,
) -> AsyncIterator[bytes]:
    """The SSE body of the snapshot stream; first yields ``b""`` once counted against
    ``holder``'s ``cap`` (``PrincipalLimitError`` there if it is at its cap).

    Then ``first`` as a ``snapshot`` event, and ``make()`` every
    ``SNAPSHOT_INTERVAL_S`` seconds whenever it differs from the last one sent; a
    keep-alive comment after ``ping_s`` seconds without an event. Ends with an ``error``
    event if ``make`` raises ``RequestError`` (the ``after_id`` session went away).
    Sleeps between yields, never across one.
    """
    with cap.hold(holder):
        yield b""
        sent: dict[str, Any] | None = None
        latest = first
        quiet_s = 0.0
        while True:
            if latest != sent:
                yield encode_sse("snapshot", latest)
                sent, quiet_s = latest, 0.0
            elif quiet_s >= ping_s:
                yield sse_comment("ping")
                quiet_s = 0.0
            await trio.sleep(SNAPSHOT_INTERVAL_S)
            quiet_s += SNAPSHOT_INTERVAL_S
            try:
                latest = await make()
            except RequestError as exc:
                yield encode_sse("error", error_body(exc.status, str(exc)))
                return


def _static(body: bytes, content_type: str) -> Response:
    return Response(body, 200, PAGE_HEADERS, content_type=content_type)


def owner_of(principal: str) -> str:
    """How a principal appears in a dashboard address: itself, or ``-`` if empty."""
    return principal or NO_OWNER


def _key(owner: str, session_id: str) -> SessionKey:
    """The session at ``<owner>/<id>``. Raises ``RequestError`` (400) if malformed."""
    if owner != NO_OWNER and not _OWNER.fullmatch(owner):
        raise RequestError(
            f"invalid owner {owner!r}: {2 * PRINCIPAL_BYTES} lowercase hex digits, "
            f"or {NO_OWNER!r} for sessions without an API key"
        )
    return session_key(session_id, "" if owner == NO_OWNER else owner)


def _address(info: SessionInfo) -> str:
    return f"{owner_of(info.principal)}/{info.session_id}"


def _dashboard_json(
    info: SessionInfo, lineage: LineageIndex | None, node: Node | None = None
) -> dict[str, Any]:
    """The management API's session JSON (with its ``parent``, from ``lineage``) plus
    ``owner``, ``address`` and ``node`` (in a cluster, the node driving it, if any;
    else ``null``)."""
    key = SessionKey(info.session_id, info.principal)
    return {
        **_session_json(info, lineage),
        "owner": owner_of(info.principal),
        "address": _address(info),
        "node": None if node is None else node.holder(key),
    }


# -- What each route takes and answers (GET /openapi.json) ----------------------------

ADDRESS = {
    "owner": "The session's principal (16 lowercase hex digits), or `-` without keys.",
    "session_id": "The session's id.",
}
PAGE_DOC = Doc(
    summary="The dashboard page",
    tag="Dashboard",
    auth="open",
    description="No data: its script asks for an operator key and reads the routes below.",
    replies=(Reply(200, "The page.", media=("text/html",)),),
)
ASSET_DOC = Doc(
    summary="A file of the dashboard page",
    tag="Dashboard",
    auth="open",
    params={"name": f"One of {', '.join(f'`{name}`' for name in ASSETS)}."},
    replies=(
        Reply(200, "The file.", media=("text/javascript", "text/css")),
        Reply(404, "No such file.", model=AnthropicError),
    ),
)
OVERVIEW_DOC = Doc(
    summary="The overview figures",
    tag="Dashboard",
    auth="operator",
    replies=(Reply(200, "Capacity, load, latency and failures.", model=Overview),),
)
STREAM_DOC = Doc(
    summary="Overview and sessions, live (server-sent events)",
    tag="Dashboard",
    auth="operator",
    description=f"A `snapshot` event at once and whenever it changes (looked at every "
    f"{SNAPSHOT_INTERVAL_S:g} s), `: ping` comments in between; it does not end by "
    "itself, but with an `error` event if the `after_id` session goes away.",
    query=SnapshotQuery,
    replies=(Reply(200, "The stream.", events={"snapshot": Snapshot, "error": AnthropicError}),),
    refusals={429: "The key has `max_listeners_per_key` streams open; see `Retry-After`."},
)
SESSION_DOC = Doc(
    summary="A session and its conversation",
    tag="Dashboard",
    auth="operator",
    params=ADDRESS,
    replies=(Reply(200, "The session and its messages.", model=DashboardConversation),),
    refusals=NOT_FOUND,
)
EVENTS_DOC = Doc(
    summary="Follow a session's events (server-sent events)",
    tag="Dashboard",
    auth="operator",
    description="As `GET /v1/sessions/{session_id}/events`, for any principal's session.",
    params=ADDRESS,
    replies=(Reply(200, "The stream.", events=SESSION_EVENTS),),
    refusals={
        **NOT_FOUND,
        429: "The key has `max_listeners_per_key` streams open; see `Retry-After`.",
    },
)
INTERRUPT_DOC = Doc(
    summary="Stop a session's running turn",
    tag="Dashboard",
    auth="operator",
    params=ADDRESS,
    replies=(Reply(200, "Whether a turn was running.", model=DashboardInterrupted),),
    refusals=NOT_FOUND,
)
DELETE_DOC = Doc(
    summary="Close and forget a session",
    tag="Dashboard",
    auth="operator",
    params=ADDRESS,
    replies=(Reply(200, "Deleted.", model=DashboardDeleted),),
    refusals={**NOT_FOUND, **NOT_HANDED_OVER},
)
