"""The access log: one ``ccactors.access`` line per HTTP request, written when its
response is over."""

from __future__ import annotations

import logging

import trio

from ._asgi import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("ccactors.access")


class AccessLog:
    """ASGI middleware writing each HTTP request's access line once its response is
    over: its last body message sent, or the application done without sending it (the
    client went away mid-stream, or the request was cancelled).

    The line is ``METHOD PATH STATUS`` (``-`` if no response started) with the fields
    ``method``, ``path``, ``status`` (absent if no response started), ``duration_ms``
    (Trio's clock, from the request reaching the application to the end of its
    response: a stream's whole length), ``complete`` (whether the response was sent to
    its end), ``client``, and ``request_id`` and ``session_id`` from the response's
    ``request-id`` and ``X-Session-ID`` headers. Written after the response's last byte
    was handed to the server, so it is never in a response's way. WebSocket
    connections pass through unlogged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = trio.current_time()
        start: Message | None = None
        complete = False

        async def send_and_note(message: Message) -> None:
            nonlocal start, complete
            if message["type"] == "http.response.start":
                start = message
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            _write(scope, start, complete, trio.current_time() - started)


def _write(scope: Scope, start: Message | None, complete: bool, seconds: float) -> None:
    """Log one request's line. Not a checkpoint."""
    status = None if start is None else start["status"]
    headers = {} if start is None else dict(start.get("headers", ()))
    client = scope.get("client")
    log.info(
        "%s %s %s",
        scope["method"],
        scope["path"],
        "-" if status is None else status,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "complete": complete,
            "client": client[0] if client else None,
            "request_id": _text(headers.get(b"request-id")),
            "session_id": _text(headers.get(b"x-session-id")),
        },
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
