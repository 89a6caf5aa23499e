"""ASGI middleware refusing browser-borne requests before the application runs.

The rules, and the attacks they stop, are in ``app.security._origin``; here they are applied to
every HTTP request and WebSocket handshake, refusals are answered in each API's error
format, and CORS preflights and headers are handled for allowed origins.
"""

from __future__ import annotations

import json
import logging
import re

from ..security._origin import Refusal, RequestPolicy
from ..wire._anthropic import error_body as anthropic_error_body
from ..wire._openai import error_body as openai_error_body
from ._asgi import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("ccactors.access")

# What a preflight allows (besides any header the preflight asks for: the origin is
# trusted), and what an allowed origin's page may read of a response.
CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = (
    "content-type",
    "x-api-key",
    "authorization",
    "anthropic-version",
    "anthropic-beta",
    "x-session-id",
    "x-claude-code-session-id",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = "request-id, x-session-id, retry-after"
CORS_MAX_AGE_S = 600
OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)


class BrowserGuard:
    """ASGI middleware applying a ``RequestPolicy`` before the application runs.

    Wrap the application's ASGI callable: ``app.asgi_app = BrowserGuard(app.asgi_app,
    policy)``. Refused requests are answered here (and logged on ``ccactors.access``);
    preflights from allowed origins too; everything else goes to the application, with
    CORS headers added to its responses for an allowed origin.

    Args:
        app: the ASGI application to guard.
        policy: the hosts and origins to accept.
    """

    def __init__(self, app: ASGIApp, policy: RequestPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection; cancellation passes through to the application."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, list[str]] = {}
        for name, value in scope.get("headers", []):
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        method = scope.get("method", "GET")
        origin = headers.get("origin", [None])[0]
        try:
            self.policy.check(scope["type"], method, headers)
        except Refusal as refusal:
            log.info(
                "%s %s %s (refused: %s)",
                method,
                scope["path"],
                refusal.status,
                refusal,
                extra={"method": method, "path": scope["path"], "status": refusal.status},
            )
            await _refuse(scope, receive, send, refusal, self._cors_headers(origin))
            return
        if method == "OPTIONS" and origin and "access-control-request-method" in headers:
            await self._preflight(send, origin, headers)
            return
        extra = self._cors_headers(origin)
        if not extra:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """CORS headers for a response to ``origin``: none unless it is allowed."""
        if not self.policy.origin_allowed(origin):
            return [(b"vary", b"origin")] if self.policy.origins else []
        assert origin is not None
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode()),
            (b"vary", b"origin"),
        ]

    async def _preflight(self, send: Send, origin: str, headers: dict[str, list[str]]) -> None:
        """Answer a CORS preflight from an allowed origin: 204, what it may send."""
        asked = ",".join(headers.get("access-control-request-headers", []))
        allowed = dict.fromkeys(
            [
                *CORS_HEADERS,
                *(h.strip().lower() for h in asked.split(",") if _TOKEN.fullmatch(h.strip())),
            ]
        )
        response = [
            *self._cors_headers(origin),
            (b"access-control-allow-methods", CORS_METHODS.encode()),
            (b"access-control-allow-headers", ", ".join(allowed).encode("latin-1")),
            (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
            (b"vary", b"access-control-request-method, access-control-request-headers"),
        ]
        if headers.get("access-control-request-private-network", [""])[0].lower() == "true":
            # Chrome's Private Network Access: a public page calling loopback.
            response.append((b"access-control-allow-private-network", b"true"))
        await send({"type": "http.response.start", "status": 204, "headers": response})
        await send({"type": "http.response.body", "body": b""})


def error_json(path: str, refusal: Refusal) -> bytes:
    """The refusal as error JSON in the format of the API ``path`` belongs to."""
    if path in OPENAI_PATHS or path.startswith("/v1/models/"):
        body = openai_error_body(refusal.status, str(refusal), code=refusal.code)
    else:
        body = anthropic_error_body(refusal.status, str(refusal))
    return json.dumps(body).encode()


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    refusal: Refusal,
    extra: list[tuple[bytes, bytes]],
) -> None:
    """Answer ``refusal`` with its status and error JSON; a WebSocket handshake is
    answered the same way instead of being accepted (ASGI's WebSocket Denial Response
    extension, which hypercorn and Quart's test client support), or else closed before
    acceptance, which the server turns into a 403."""
    body = error_json(scope["path"], refusal)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        start = {"type": "websocket.http.response.start", "status": refusal.status}
        await send({**start, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
