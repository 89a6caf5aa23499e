"""A small Python client for ccactors' WebSocket sessions, on trio-websocket.

The protocol is described in ``app.http._websocket`` and docs/reference/websocket.md.
Frames are plain dicts, exactly as the server sends them::

    async with open_session_client("http://127.0.0.1:8765", "my-session") as client:
        async for frame in client.stream_turn("Hello"):
            if frame["type"] == "text_delta":
                print(frame["text"], end="")
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

Frame = dict[str, Any]

FINAL_EVENTS = ("turn_completed", "turn_failed")
# Frames buffered by the client before it stops reading the socket (the server then
# lets this connection lag rather than slow the session).
MESSAGE_QUEUE_SIZE = 64
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a tool result can be a whole file


class SessionRejectedError(Exception):
    """The server refused the connection (e.g. the session id is invalid).

    Attributes:
        code: the WebSocket close code (1008 for an invalid session id), or the HTTP
            status if the server refused the handshake itself.
        message: why, as the server said it.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


def session_ws_url(base_url: str, session_id: str) -> str:
    """The WebSocket URL of a session: ``http(s)://host`` becomes ``ws(s)://host``, and
    ``/v1/sessions/<id>/ws`` is appended (the id percent-encoded). Not a checkpoint."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path.rstrip('/')}/v1/sessions/{quote(session_id, safe='')}/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class SessionClient:
    """One WebSocket connection to one session. Make one with ``open_session_client``.

    Attributes:
        session: the server's first frame, ``{"type": "session", "id", "exists",
            "state", "live"}``.

    One task should read (``receive``, ``events`` or ``stream_turn``) at a time; any
    task may send (``send_turn``, ``interrupt``) meanwhile.
    """

    def __init__(self, ws: WebSocketConnection, session: Frame) -> None:
        self.session = session
        self._ws = ws

    async def send_turn(
        self, content: str, *, id: str | None = None, model: str | None = None
    ) -> None:
        """Send a turn (a new user message), on ``model`` if given (else the session's
        current model). The server replies ``turn_accepted`` (with the turn's
        ``turn_id``) or ``error``, carrying ``id`` if given.

        Raises:
            trio_websocket.ConnectionClosed: the connection is closed.
        """
        message = {"type": "turn", "content": content}
        message |= {"id": id} if id else {}
        message |= {"model": model} if model else {}
        await self._send(message)

    async def interrupt(self) -> None:
        """Ask the server to stop the session's running turn (whoever sent it). It
        replies ``interrupt_result``; the turn ends with ``turn_failed`` (``interrupted``).

        Raises:
            trio_websocket.ConnectionClosed: the connection is closed.
        """
        await self._send({"type": "interrupt"})

    async def answer_permission(
        self, request_id: str, allow: bool, message: str | None = None
    ) -> None:
        """Answer a ``permission_request`` (the server's ``ask`` permission mode). The
        server replies ``permission_result`` saying whether the answer was still wanted.

        Raises:
            trio_websocket.ConnectionClosed: the connection is closed.
        """
        frame = {"type": "permission_response", "request_id": request_id, "allow": allow}
        await self._send(frame if message is None else {**frame, "message": message})

    async def receive(self) -> Frame:
        """The next frame from the server.

        Raises:
            trio_websocket.ConnectionClosed: the connection is closed.
        """
        return json.loads(await self._ws.get_message())

    async def events(self) -> AsyncIterator[Frame]:
        """Every frame from the server until the connection closes."""
        while True:
            try:
                frame = await self.receive()
            except ConnectionClosed:
                return
            yield frame

    async def stream_turn(self, content: str, *, model: str | None = None) -> AsyncIterator[Frame]:
        """Send a turn (on ``model``, if given) and yield its frames: ``turn_accepted``
        then the turn's events up to its ``turn_completed`` or ``turn_failed``; or a
        single ``error`` if it was refused. ``lagged`` frames are yielded too; frames of
        other turns (other clients' on the same session) are skipped.

        Raises:
            trio_websocket.ConnectionClosed: the connection closed before the turn ended.

        If cancelled (or closed early), the turn goes on: call ``interrupt`` to stop it.
        """
        request_id = uuid.uuid4().hex
        await self.send_turn(content, id=request_id, model=model)
        turn_id = None
        while True:
            frame = await self.receive()
            if frame.get("id") == request_id:
                yield frame
                if frame["type"] != "turn_accepted":
                    return
                turn_id = frame["turn_id"]
            elif frame["type"] == "lagged" or (
                turn_id is not None and frame.get("turn_id") == turn_id
            ):
                yield frame
                if frame["type"] in FINAL_EVENTS:
                    return

    async def _send(self, message: Frame) -> None:
        await self._ws.send_message(json.dumps(message))


@asynccontextmanager
async def open_session_client(
    base_url: str, session_id: str, *, api_key: str | None = None
) -> AsyncIterator[SessionClient]:
    """Connect to a session's WebSocket and yield a ``SessionClient``.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8765`` (``ws://`` works too).
        session_id: the session; it need not exist yet (its first turn starts it).
        api_key: sent as ``x-api-key`` when the server requires keys.

    Raises:
        SessionRejectedError: the server refused the connection (invalid session id).
        trio_websocket.HandshakeError: the server could not be reached (the
            ``OSError`` is its ``__cause__``), or did not complete the handshake.

    Leaving the block closes the connection; a turn this connection sent that is still
    running is then interrupted by the server (or finished, with ``on_disconnect=finish``).
    """
    url = session_ws_url(base_url, session_id)
    ws: WebSocketConnection | None = None
    try:
        headers = [] if api_key is None else [("x-api-key", api_key)]
        async with open_websocket_url(
            url,
            extra_headers=headers,
            message_queue_size=MESSAGE_QUEUE_SIZE,
            max_message_size=MAX_MESSAGE_BYTES,
        ) as ws:
            try:
                hello = json.loads(await ws.get_message())
            except ConnectionClosed as exc:
                raise SessionRejectedError(exc.reason.code, exc.reason.reason or "") from None
            if hello.get("type") == "error":
                await _wait_closed(ws)
                raise SessionRejectedError(ws.closed.code, hello["error"]["message"])
            yield SessionClient(ws, hello)
    except ConnectionRejected as exc:  # only the handshake raises it
        raise SessionRejectedError(exc.status_code, _error_message(exc.body)) from None
    finally:
        if ws is not None:
            # trio-websocket 0.12 leaves the TCP stream open when the server closed the
            # connection (it waits for the server's TCP close, then never closes its
            # own end): close it, so no socket outlives the block.
            await trio.aclose_forcefully(ws._stream)


async def _wait_closed(ws: WebSocketConnection) -> None:
    """Read until the server closes the connection (it does, after an error frame)."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.get_message()


def _error_message(body: bytes | None) -> str:
    text = (body or b"").decode(errors="replace")
    try:
        return json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return text or "the server refused the connection"
