"""WebSocket sessions: ``/v1/sessions/<session_id>/ws``, one conversation shared by any
number of connections.

Protocol (JSON text frames; docs/reference/websocket.md has examples):

Client to server:

* ``{"type": "turn", "content": "text"}``: a new user message for the session, held to
  the same limits as over HTTP (it goes through ``app.http._pipeline``). Optional
  ``"id"`` (a string of the client's choosing) is echoed in the reply. Optional
  ``"model"`` is resolved as the HTTP APIs' ``model`` is (``Settings.resolve_model``):
  the session's CLI switches to it before the turn (``set_model``, no restart) and the
  session stays on it; without one, the turn runs on the session's current model.
* ``{"type": "interrupt"}``: stop the session's running turn, whoever sent it. Optional
  ``"id"`` as above.

Server to client:

* ``{"type": "session", "id", "exists", "state", "live"}``: first frame, once.
* ``{"type": "turn_accepted", "turn_id", "id"?}``: to the sender only; the turn is queued.
  Sent before any event of that turn.
* Every event of the session's turns, as ``app.wire._events.event_json`` writes it:
  ``turn_started``, ``text_delta``, ``thinking_delta``, ``tool_use``, ``tool_result``,
  ``turn_completed`` (usage, total_cost_usd), ``turn_failed`` (reason, message).
* ``{"type": "lagged", "dropped": n}``: this connection read too slowly and lost ``n``
  events.
* ``{"type": "interrupt_result", "interrupted": bool, "id"?}``: reply to ``interrupt``.
* ``{"type": "error", "error": {"type", "message", "retry_after_s"?}, "id"?}``: a bad
  client message (``invalid_request_error``, also for a malformed or refused
  ``model``) or a refused turn (``rate_limit_error``: mailbox full,
  ``overloaded_error``: no capacity or shutting down, ``api_error``: the CLI could not
  start), with Anthropic's error types. The connection stays open.

Each turn message gets exactly one reply, ``turn_accepted`` or ``error``, in the order
the messages were sent. A turn is held to the same limits as over HTTP: a prompt over
``max_prompt_chars`` gets ``invalid_request_error``, a key with ``max_turns_per_key``
turns under way (or at its share of live CLIs) ``rate_limit_error``.

An invalid session id in the URL, a missing key, or a key that already has
``max_websockets_per_key`` connections open gets an ``error`` frame (the last with
``rate_limit_error`` and ``retry_after_s``), then the server closes the connection with
code 1008 (policy violation) and the same reason. The handshake is accepted first, so
the client can read why.

Liveness: hypercorn pings every connection each ``ws_ping_interval_s``. That is the
keep-alive, whatever the session does (a turn that only runs tools included): protocol
pings pass every WebSocket proxy and need no JSON frame the client would have to skip.
A connection with no client message for ``ws_idle_timeout_s``, and no turn of its own
under way, is closed with code 1000 and reason ``idle timeout``.

Design. Every connection shows the session's events from one place: a listener
(``Supervisor.listen``), so the sender of a turn and every other connection see the same
events in the same order, each exactly once. A connection that sends a turn holds it
open with ``Supervisor.open_turn`` and drains the turn's own channel silently: it only
keeps the turn alive (leaving it interrupts the turn, as for an HTTP client) and reports
what listeners cannot see, a turn that failed before it started (``session_closed``,
``overloaded``), whose ``turn_failed`` goes to its sender alone.

A session only exists once its first turn starts it, and ``listen`` needs it. So a
connection whose session does not exist (yet, or any more) waits for it with
``Supervisor.wait_for_session`` and listens, with no checkpoint in between, as soon as it
is registered, whichever route starts it (a WebSocket, HTTP, ``/v1/chat/completions``).
A session is registered before its first turn reaches its actor, and the actor sends
that turn's ``TurnStarted`` only later, so a connection that was waiting sees the first
turn from ``turn_started`` on. Connections are also kept in a registry per session id:
right after a WebSocket turn is queued (before any checkpoint, so before the actor can
run it), every connection of that session listens to it, including one still sending
the last events of the session's previous incarnation (deleted or forgotten). Only such
a connection, still busy with an old incarnation when another route re-creates the
session, may miss the start of the new incarnation's first turn.

Each connection is one nursery: a reader of client messages, a forwarder of listener
events, a writer (the only task that sends on the socket, from a bounded outbox), and
one task per turn it sent. quart-trio cancels it when the client goes away; each turn
is then left, which interrupts it (or lets it finish, with ``on_disconnect=finish``).
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Iterator

import trio
from quart import Blueprint, current_app, websocket
from quart.wrappers import Websocket

from actors import (
    PrincipalLimitError,
    SessionError,
    SessionKey,
    SessionNotFoundError,
    Supervisor,
    Turn,
    TurnFailed,
    TurnStarted,
)

from .._settings import Settings
from ..security._auth import AuthError, principal_for
from ..wire import _json
from ..wire._events import event_json
from ..wire._problems import RequestError
from ..wire._websocket import (
    BadMessageError,
    Frame,
    InterruptMessage,
    PermissionResponseMessage,
    TurnMessage,
    _with_id,
    error_frame,
    parse_client_message,
    refusal_frame,
    turn_request,
)
from ._limits import PerKeyCap
from ._management import SESSION_EVENTS
from ._pipeline import open_turn
from ._route_docs import Doc, Reply, documented
from ._session_ids import session_key
from ._shapes import (
    ErrorFrame,
    InterruptResultFrame,
    PermissionResultFrame,
    SessionFrame,
    TurnAcceptedFrame,
)
from ._turns import prepare_turn

# Frames waiting for the socket, per connection. Past this, event forwarding waits
# and a slow client's listener lags (it never slows the session).
OUTBOX_SIZE = 32
POLICY_VIOLATION = 1008  # WebSocket close code (RFC 6455, 7.4.1)
NORMAL_CLOSURE = 1000
IDLE_REASON = "idle timeout"
MAX_CLOSE_REASON = 123  # bytes a close frame has room for


# -- Connections ----------------------------------------------------------------------


class _Registry:
    """The open connections of each session id, so that a turn queued by one of them
    makes all of them listen."""

    def __init__(self) -> None:
        self._by_key: dict[SessionKey, set[_Connection]] = collections.defaultdict(set)

    @contextlib.contextmanager
    def registered(self, connection: _Connection) -> Iterator[None]:
        self._by_key[connection.key].add(connection)
        try:
            yield
        finally:
            connections = self._by_key[connection.key]
            connections.discard(connection)
            if not connections:
                del self._by_key[connection.key]

    def attach_all(self, key: SessionKey) -> None:
        """Make every connection of ``key`` listen to the session. Not a checkpoint."""
        for connection in self._by_key.get(key, ()):
            connection.attach()


class _Listening:
    """One listener on one incarnation of the session (an actor)."""

    def __init__(self, supervisor: Supervisor, key: SessionKey, created_at: float) -> None:
        self.created_at = created_at  # tells incarnations of one session id apart
        self._stack = contextlib.ExitStack()
        self.events = self._stack.enter_context(supervisor.listen(key))

    def close(self) -> None:
        self._stack.close()


class _Connection:
    """One WebSocket connection to one session."""

    def __init__(
        self, supervisor: Supervisor, key: SessionKey, registry: _Registry, settings: Settings
    ) -> None:
        self.key = key
        self._supervisor = supervisor
        self._registry = registry
        self._settings = settings
        self._turns = 0  # turns this connection sent that are under way
        self._idle_scope: trio.CancelScope | None = None  # around a receive
        # Listeners in order; more than one only while an old incarnation ends.
        self._listening: collections.deque[_Listening] = collections.deque()
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[Frame](OUTBOX_SIZE)

    def attach(self) -> None:
        """Listen to the session if it exists and this connection does not already
        listen to its current incarnation. Not a checkpoint."""
        info = self._supervisor.session(self.key)
        if info is None:
            return
        if self._listening and self._listening[-1].created_at == info.created_at:
            return
        try:
            self._listening.append(_Listening(self._supervisor, self.key, info.created_at))
        except SessionNotFoundError:
            return

    async def serve(self, ws: Websocket) -> None:
        """Serve the connection until it is cancelled (the client went away) or idle
        for ``ws_idle_timeout_s`` (then it is closed with code 1000)."""
        with self._registry.registered(self), self._outbox_send, self._outbox_receive:
            try:
                self.attach()
                info = self._supervisor.session(self.key)
                self._outbox_send.send_nowait(
                    {
                        "type": "session",
                        "id": self.key.session_id,
                        "exists": info is not None,
                        "state": None if info is None else info.state,
                        "live": info is not None and info.live,
                    }
                )
                async with trio.open_nursery() as nursery:
                    # Following the session before the client can read the first frame.
                    await nursery.start(self._forward_events)
                    nursery.start_soon(self._write, ws)
                    await self._read(ws, nursery)
                    nursery.cancel_scope.cancel()  # idle: no turn of its own is under way
            finally:
                for listening in self._listening:
                    listening.close()
                self._listening.clear()
        await ws.close(NORMAL_CLOSURE, IDLE_REASON)

    async def _send(self, frame: Frame) -> None:
        await self._outbox_send.send(frame)

    async def _write(self, ws: Websocket) -> None:
        async for frame in self._outbox_receive:
            await ws.send(_json.dumps(frame).decode())

    async def _forward_events(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Forward the session's events from its listeners, waiting for the session to
        exist (or to exist again) whenever there is none. Reports started once it
        follows the session: any registration of it from then on is heard."""
        task_status.started()
        while True:
            while not self._listening:
                # Listens with no checkpoint after the wait: from the first turn's start.
                await self._supervisor.wait_for_session(self.key)
                self.attach()
            listening = self._listening[0]
            async for event in listening.events:
                await self._send(event_json(event))
            # That incarnation of the session is gone (forgotten, closed).
            listening.close()
            self._listening.popleft()

    def _rearm_idle(self) -> None:
        """Restart the idle deadline of the receive under way (none while a turn of this
        connection is under way). Not a checkpoint."""
        if self._idle_scope is not None:
            idle = trio.current_time() + self._settings.ws_idle_timeout_s
            self._idle_scope.deadline = math.inf if self._turns else idle

    async def _read(self, ws: Websocket, nursery: trio.Nursery) -> None:
        """Handle client messages until the connection has been idle too long."""
        while True:
            with trio.CancelScope() as self._idle_scope:
                self._rearm_idle()
                data = await ws.receive()
            idle, self._idle_scope = self._idle_scope.cancelled_caught, None
            if idle:
                return
            try:
                message = parse_client_message(data)
            except BadMessageError as exc:
                await self._send(error_frame(400, str(exc), id=exc.id))
                continue
            match message:
                case TurnMessage():
                    try:
                        turn = prepare_turn(turn_request(message), self.key, self._settings)
                    except RequestError as exc:
                        await self._send(error_frame(exc.status, str(exc), id=message.id))
                        continue
                    # Returns once the turn is queued or refused: replies stay in order.
                    await nursery.start(self._run_turn, turn, message.id)
                case InterruptMessage():
                    try:
                        interrupted = self._supervisor.interrupt(self.key)
                    except SessionNotFoundError:
                        interrupted = False
                    reply = {"type": "interrupt_result", "interrupted": interrupted}
                    await self._send(_with_id(reply, message.id))
                case PermissionResponseMessage():
                    try:
                        accepted = self._supervisor.answer_permission(
                            self.key, message.request_id, message.allow, message.message or ""
                        )
                    except SessionNotFoundError:
                        accepted = False
                    reply = {
                        "type": "permission_result",
                        "request_id": message.request_id,
                        "accepted": accepted,
                    }
                    await self._send(_with_id(reply, message.id))

    async def _run_turn(
        self, turn: Turn, id: str | None, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Queue ``turn`` and hold it until it ends; its events reach the client through
        the listener. If cancelled (the client went away), the turn is interrupted.
        While it is under way, the connection is not idle."""
        self._turns += 1
        try:
            await self._hold_turn(turn, id, task_status)
        finally:
            self._turns -= 1
            self._rearm_idle()

    async def _hold_turn(
        self, turn: Turn, id: str | None, task_status: trio.TaskStatus[None]
    ) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                events = await stack.enter_async_context(
                    open_turn(self._supervisor, self.key, turn)
                )
            except SessionError as exc:
                await self._send(refusal_frame(exc, id))
                task_status.started()
                return
            # Queued, and no checkpoint since: the actor has not seen the turn yet. So
            # every connection of the session (this one too, if the turn just started
            # the session) listens before the first event of the turn is published,
            # and turn_accepted is in the outbox (or waiting for room, and memory
            # channels let waiting senders in in order) ahead of any of its events.
            self._registry.attach_all(self.key)
            await self._send(_with_id({"type": "turn_accepted", "turn_id": turn.turn_id}, id))
            task_status.started()
            started = False
            async for event in events:
                if isinstance(event, TurnStarted):
                    started = True
                elif isinstance(event, TurnFailed) and not started:
                    # Failed before it started: listeners are never told of it.
                    await self._send(event_json(event))
                    return
            if not started:
                failed = TurnFailed(turn.turn_id, "session_closed", "the session closed")
                await self._send(event_json(failed))


def websocket_blueprint(supervisor: Supervisor, settings: Settings) -> Blueprint:
    """The WebSocket route ``/v1/sessions/<session_id>/ws`` (see the module docstring
    for the protocol).

    Args:
        supervisor: runs the sessions.
        settings: the server's settings (``max_websockets_per_key``,
            ``ws_idle_timeout_s``, ``max_prompt_chars``).

    Returns:
        A blueprint to register on the quart-trio app.

    A connection with an invalid session id, without a valid key, or beyond its key's
    ``max_websockets_per_key`` gets an ``error`` frame and is closed with code 1008
    (policy violation) and the reason. The count of a key's connections is given back
    synchronously however a connection ends (cancellation included).
    A connection is served until the client closes it; then its running turns are left
    (interrupted, or finished with ``on_disconnect=finish``).
    """
    blueprint = Blueprint("websocket", __name__)
    registry = _Registry()
    connections = PerKeyCap(settings.max_websockets_per_key, "WebSockets")

    async def reject(frame: Frame) -> None:
        reason = frame["error"]["message"]
        await websocket.send(_json.dumps(frame).decode())
        await websocket.close(POLICY_VIOLATION, reason[:MAX_CLOSE_REASON])

    @blueprint.websocket("/v1/sessions/<session_id>/ws")
    @documented(WEBSOCKET_DOC)
    async def session_socket(session_id: str) -> None:
        await websocket.accept()
        try:
            principal = principal_for(websocket.headers, current_app.config["KEY_HASHES"])
            key = session_key(session_id, principal)
        except (AuthError, RequestError) as exc:
            status = 401 if isinstance(exc, AuthError) else exc.status
            await reject(error_frame(status, str(exc)))
            return
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(connections.hold(principal))
            except PrincipalLimitError as exc:
                await reject(refusal_frame(exc))
                return
            connection = _Connection(supervisor, key, registry, settings)
            await connection.serve(websocket._get_current_object())

    return blueprint


# -- What the route takes and answers (GET /openapi.json) -----------------------------

WEBSOCKET_DOC = Doc(
    summary="A session over a WebSocket",
    tag="Sessions",
    description="A WebSocket handshake (`Upgrade: websocket`): send `turn`, `interrupt` "
    "and `permission_response` messages, receive the session's events (JSON text "
    "frames; `x-websocket` lists both sides; docs/websocket.md has the protocol). A "
    "missing or invalid key, an invalid session id or a key over "
    "`max_websockets_per_key` is an `error` frame, then close code 1008.",
    params={"session_id": "The session's id (it need not exist yet)."},
    replies=(Reply(101, "Switching Protocols: the WebSocket is open."),),
    refusals={400: "Not a WebSocket handshake."},
    websocket={
        "client": [TurnMessage, InterruptMessage, PermissionResponseMessage],
        "server": [
            SessionFrame,
            TurnAcceptedFrame,
            *SESSION_EVENTS.values(),
            InterruptResultFrame,
            PermissionResultFrame,
            ErrorFrame,
        ],
    },
)
