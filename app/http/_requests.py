"""The request being served: its JSON body and its caller. Shared by every route."""

from __future__ import annotations

from typing import Any

from quart import g, request

from ..wire import _json
from ..wire._problems import RequestError


async def json_object() -> dict[str, Any]:
    """The request body as a JSON object.

    Only a body declared ``Content-Type: application/json`` is read: a web page can send
    ``text/plain`` (or a form) to any server without asking, but not JSON (see
    ``app.http._browser``). Nesting deeper than ``app.wire._json.MAX_DEPTH`` is refused.

    Raises:
        RequestError: the body is not declared JSON (415), is not valid JSON or nests
            too deeply (400), or is not an object (400); each API's handler formats it.
    """
    content_type = request.headers.get("Content-Type")
    if not _json.is_json_media_type(content_type):
        given = f"not {content_type!r}" if content_type else "and it has none"
        raise RequestError(
            f"the request body must be Content-Type: application/json, {given}", status=415
        )
    raw = await request.get_data()
    try:
        body = _json.loads(raw)
    except ValueError as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def current_principal() -> str:
    """The principal of the request or WebSocket being served (set by the auth check)."""
    return g.get("principal", "")
