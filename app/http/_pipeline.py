"""The turn pipeline: one path from a request to a turn and back, for every front end.

An API (Anthropic Messages, OpenAI Chat Completions) is a codec (``app.wire``) plus a
thin route that calls ``serve_turn``. The pipeline owns, in this order:

1. the JSON body (``json_object``) and the codec's parse into a ``TurnRequest``;
2. request limits (``check_size``: ``max_messages``);
3. session resolution (``resolve_session``: headers, then body fields, as README
   "Sessions" documents), then, for the HTTP APIs, the conversation's lineage
   (``app.http._lineage.place_turn``): continue the session whose head the request's
   history is, fork one at the turn where it branched off, or start a new one (with a
   server-minted id when the client gave none);
4. the turn itself (``prepare_turn``, in ``app.http._turns``): its prompt from the
   request's messages (``build_prompt``: what the session
   does not hold goes along as context) and its limits (``check_media``: the number
   and sizes of the images and documents it sends; ``check_prompt``:
   ``max_prompt_chars`` of its text); its model (``Settings.resolve_model``) and what the
   client's system prompt does (``client_system``, setting ``client_system``);
5. ``Supervisor.open_turn``, then collecting the events into one response or streaming
   them, with a keep-alive after ``sse_ping_interval_s`` seconds without a byte written;
6. every refusal and failure as a ``Problem`` (``problem_for``, ``failure_problem``,
   ``problem_response``): the one table from ``SessionError`` / ``TurnFailed`` to
   status, error type, ``Retry-After`` and ``x-should-retry``, which each codec words
   its own way. The table itself is in ``app.wire._problems``, below both this module
   and the codecs, so that a codec can word a failure that arrives mid-stream.

The request vocabulary (``TurnRequest``, ``Message``) and what a codec must do
(``Codec``, ``Reply``) are in ``app.wire._codec``.

The WebSocket front end (``app.http._websocket``) keeps its own connection loop (one
conversation shared by many connections) and goes through the same steps for each turn
message: its codec (``app.wire._websocket.turn_request``) makes a ``TurnRequest``,
``prepare_turn`` applies the limits and builds the ``Turn``, ``open_turn`` queues it,
and a refusal is worded from the same problem table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from quart import Response, make_response, request

from actors import (
    ForkPoint,
    SessionEvent,
    SessionKey,
    SessionNotFoundError,
    SessionStartError,
    Supervisor,
    TextDelta,
    Turn,
    TurnCompleted,
    TurnFailed,
)

from .._settings import Settings
from ..sessions._lineage_index import LineageIndex
from ..wire._codec import Codec, Reply, TurnRequest
from ..wire._problems import (
    SESSION_CLOSED,
    Problem,
    failure_problem,
)
from ..wire._sse import SSE_HEADERS
from ._lineage import Placement, place_turn
from ._requests import current_principal, json_object
from ._session_ids import resolve_session
from ._turns import prepare_turn

log = logging.getLogger(__name__)

# -- Responses ----------------------------------------------------------------------


def problem_response(problem: Problem, error_json: Callable[[Problem], dict[str, Any]]) -> Response:
    """An error response: the API's error JSON, the problem's status and headers."""
    body = json.dumps(error_json(problem))
    return Response(body, problem.status, problem.headers(), content_type="application/json")


# -- Turns ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_turn(
    supervisor: Supervisor,
    key: SessionKey | None,
    turn: Turn,
    *,
    principal: str = "",
    fork: ForkPoint | None = None,
) -> AsyncIterator[trio.MemoryReceiveChannel[SessionEvent]]:
    """``Supervisor.open_turn`` for every front end: queue ``turn`` and yield its events
    (``fork``: a session this turn starts branches off there).

    Raises the supervisor's ``SessionError`` (worded by ``problem_for``) if the turn is
    refused. Entering has no checkpoint after the turn is queued, so a caller can still
    act before the session's actor sees the turn (the WebSocket attaches its listeners
    there). Leaving early, cancellation included, interrupts the turn.
    """
    async with supervisor.open_turn(key, turn, principal=principal, fork=fork) as events:
        yield events


async def serve_turn(
    codec: Codec,
    supervisor: Supervisor,
    settings: Settings,
    lineage: LineageIndex | None = None,
) -> Response:
    """Run the turn the current request asks for and answer it in ``codec``'s format.

    Args:
        codec: the API of the route.
        supervisor: runs the turn.
        settings: ``max_messages``, ``max_prompt_chars`` and ``sse_ping_interval_s``
            (seconds without a byte written before a keep-alive).
        lineage: the lineage index that places the turn (``app.http._lineage``); without
            one, a request without a session id runs on a one-turn session.

    Returns:
        The response: the whole answer, a stream of it, or the turn's failure. With a
        session (with ``lineage``: always), it carries ``X-Session-ID``.

    Raises:
        RequestError: the request is malformed or over a limit.
        SessionError: the supervisor refused the turn (also when streaming: the stream
            starts only once the turn is queued).

    If cancelled (the client went away), the turn is interrupted.
    """
    body = await json_object()
    turn_request = codec.parse(body, request.headers)
    principal = current_principal()
    key = resolve_session(request.headers, body, principal)
    turn = prepare_turn(turn_request, key, settings)  # refuses a bad request before placing
    placement = None
    if lineage is not None:
        session_id = None if key is None else key.session_id
        placement = await place_turn(
            lineage, supervisor, principal, session_id, turn_request.messages
        )
    try:
        if placement is None:
            return await _answer(codec, supervisor, settings, key, turn, turn_request, None)
        turn = prepare_turn(
            turn_request, placement.key, settings, context_from=placement.context_from
        )
        try:
            return await _answer(
                codec, supervisor, settings, placement.key, turn, turn_request, placement
            )
        except SessionStartError:
            if placement.fork is None:
                raise
            # The conversation to fork could not be resumed (its transcript is gone):
            # a new conversation given the history as context, rather than an error on
            # every edit before that point.
            log.warning("could not fork for %s: giving the history as context", placement.key)
            placement.drop_fork()
            turn = prepare_turn(turn_request, placement.key, settings, context_from=0)
            return await _answer(
                codec, supervisor, settings, placement.key, turn, turn_request, placement
            )
    except BaseException:
        if placement is not None:
            placement.release()
        raise


async def _answer(
    codec: Codec,
    supervisor: Supervisor,
    settings: Settings,
    key: SessionKey | None,
    turn: Turn,
    turn_request: TurnRequest,
    placement: Placement | None,
) -> Response:
    """``serve_turn`` once the turn is placed; ``placement`` is released when the turn
    is over (when its stream ends, for a stream)."""
    principal = current_principal()
    headers = {} if key is None else {"X-Session-ID": key.session_id}
    # Until the CLI says which model answered, the reply names the model asked of it.
    asked = dataclasses.replace(turn_request, model=turn.model or turn_request.model)
    reply = codec.reply(turn.turn_id, asked)
    if turn_request.stream:
        stream = stream_turn(
            supervisor,
            key,
            turn,
            reply,
            settings.sse_ping_interval_s,
            principal=principal,
            placement=placement,
        )
        # Queues the turn (a refusal is a plain error response) and sends its prompt.
        await anext(stream)
        response = Response(stream, 200, {**SSE_HEADERS, **headers})
        response.timeout = None  # Quart would cut the stream after 60 s
        return response
    fork = None if placement is None else placement.fork
    try:
        async with open_turn(supervisor, key, turn, principal=principal, fork=fork) as events:
            collected = [event async for event in events]
        outcome = collected[-1] if collected else None
        _turn_ended(supervisor, placement, collected, outcome)
    finally:
        if placement is not None:
            placement.release()
    match outcome:
        case TurnCompleted() as done:
            return await make_response(reply.message(collected, done), 200, headers)
        case TurnFailed() as failed:
            problem = failure_problem(failed)
        case _:
            problem = SESSION_CLOSED
    response = problem_response(problem, codec.error_json)
    response.headers.update(headers)
    return response


def _turn_ended(
    supervisor: Supervisor,
    placement: Placement | None,
    events: list[SessionEvent],
    outcome: SessionEvent | None,
) -> None:
    """Record a completed turn's lineage; close a session the turn created for nothing
    (its first turn failed), so that failing retries do not pile sessions up. Not a
    checkpoint."""
    if placement is None:
        return
    if isinstance(outcome, TurnCompleted):
        placement.completed(events, outcome)
    elif placement.disposable:
        with contextlib.suppress(SessionNotFoundError):
            supervisor.close_session_nowait(placement.key, "its first turn failed")


# At most this long (seconds) a stream's HTTP head waits for the turn's prompt to reach
# the CLI (``stream_turn``): a warm turn's takes ~3 ms. In 10 alternating runs of 60
# warm turns, waiting for it gave the first text sooner in 9 (TTFT p50 0.987x, whole
# turn 0.99x of sending the head first).
HEAD_HOLD_S = 0.050
# Frames joined into one write at most: bounds the write (and the delay of its first
# frame) when the CLI outpaces the client.
MAX_FRAMES_PER_WRITE = 256
# While deltas come faster than this apart, they are written together at most this long
# after the previous write (seconds): a stream costs fewer writes and wake-ups, and no
# delta waits longer than this.
COALESCE_S = 0.010
# A write of this many frames or more marks a dense stream (1,600 or more a second): its
# next write gathers for the whole COALESCE_S without waking for each event, so its last
# frame (the turn's end included) may wait up to COALESCE_S.
DENSE_FRAMES = 16


async def _next_event(events: trio.MemoryReceiveChannel[SessionEvent]) -> SessionEvent | None:
    """The next event, or ``None`` once the channel has ended."""
    try:
        return await events.receive()
    except trio.EndOfChannel:
        return None


async def stream_turn(
    supervisor: Supervisor,
    key: SessionKey | None,
    turn: Turn,
    reply: Reply,
    ping_s: float,
    *,
    principal: str = "",
    placement: Placement | None = None,
) -> AsyncIterator[bytes]:
    """The body of a streaming turn. Its first (empty) item is yielded once the turn is
    queued (so the route can still answer a refusal with a status code) and its prompt
    has reached the CLI, or at most ``HEAD_HOLD_S`` seconds after it was queued.

    When ``ping_s`` seconds pass with no byte written (events the API does not show,
    such as Claude Code's tool activity, write none), ``reply.ping()`` goes out. The
    stream's start (``reply.start()``: ``message_start``, the role chunk) is written
    with the first frames, the first keep-alive included. Events
    already queued when one arrives are written with it, as one chunk (at most
    ``MAX_FRAMES_PER_WRITE`` frames). No yield happens inside a cancel scope. A client
    that disconnects cancels the task iterating this generator; leaving ``open_turn``
    then interrupts the turn. The turn's lineage is recorded from the text deltas
    streamed, and ``placement`` (if any) released when the generator ends.
    """
    fork = None if placement is None else placement.fork
    try:
        async with open_turn(supervisor, key, turn, principal=principal, fork=fork) as events:
            # The route returns (and quart writes the HTTP head) once the prompt is with
            # the CLI: its first event, ``TurnStarted``, comes after the write. Sent
            # first, the head's write and the client's read of it delayed the prompt
            # ~1.5 ms on 2 cores. A turn that waits (its session busy, its CLI
            # starting) gets its head after HEAD_HOLD_S, as before.
            held: list[SessionEvent | None] = []
            with trio.move_on_after(HEAD_HOLD_S):
                held.append(await _next_event(events))
            yield b""
            # The stream's start (``reply.start()``) goes out with the first frames the
            # turn shows (or the first keep-alive), in the same write, not while the CLI
            # works on the prompt: on 2 cores that write, and the client's read of it,
            # slowed the CLI by ~2.5 ms a warm turn (docs/reference/benchmarks.md).
            head = reply.start()
            deadline = trio.current_time() + ping_s
            finished = False
            streamed: list[SessionEvent] = []  # the text deltas, for the lineage

            def frames_for(event: SessionEvent | None) -> tuple[list[bytes], bool]:
                match event:
                    case TurnCompleted() | TurnFailed():
                        _turn_ended(supervisor, placement, streamed, event)
                        return [*reply.encode(event), *reply.end()], True
                    case None:
                        _turn_ended(supervisor, placement, streamed, None)
                        return [*reply.failed(SESSION_CLOSED), *reply.end()], True
                    case TextDelta():
                        streamed.append(event)
                return reply.encode(event), False

            def take_queued(frames: list[bytes]) -> bool:
                """Add the frames of the events queued now, without a checkpoint; whether
                the turn is finished."""
                while len(frames) < MAX_FRAMES_PER_WRITE:
                    try:
                        event = events.receive_nowait()
                    except trio.WouldBlock:
                        return False
                    except trio.EndOfChannel:
                        event = None
                    more, finished = frames_for(event)
                    frames += more
                    if finished:
                        return True
                return False

            written = -math.inf  # when the last write went out
            dense = False  # the last write carried DENSE_FRAMES or more
            while not finished:
                frames = [reply.ping()]
                with trio.move_on_at(deadline):
                    event = held.pop() if held else await _next_event(events)
                    frames, finished = frames_for(event)
                    # And the events already queued behind it: a burst of deltas is one
                    # write (one ASGI send, one syscall).
                    finished = finished or take_queued(frames)
                # In a burst (the last write was under COALESCE_S ago), gather what
                # arrives until COALESCE_S after it: fewer, larger writes. A write after
                # a pause (the first text of a turn) goes out after one pass through the
                # scheduler (the window has passed: its scope cancels at the first
                # checkpoint). Skipping that pass handed the first text to hypercorn
                # ~0.4 ms sooner, yet made warm turns ~2% slower in two A/B series
                # (docs/reference/benchmarks.md), so it stays. In a dense stream, sleep
                # to the end of that window and take what came then, rather than waking
                # for each event (a scheduler pass per delta).
                if dense and not finished:
                    await trio.sleep_until(written + COALESCE_S)
                    finished = take_queued(frames)
                else:
                    with trio.move_on_at(written + COALESCE_S):
                        while not finished and len(frames) < MAX_FRAMES_PER_WRITE:
                            more, finished = frames_for(await _next_event(events))
                            frames += more
                if frames:
                    yield b"".join([*head, *frames])
                    head = []
                    written = trio.current_time()
                    deadline = written + ping_s
                    dense = len(frames) >= DENSE_FRAMES
    finally:
        if placement is not None:
            placement.release()
