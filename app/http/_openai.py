"""The OpenAI-compatible routes: ``POST /v1/chat/completions``, ``GET /v1/models``."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import quart
import trio
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from actors import (
    CapacityError,
    RetryLaterError,
    SessionError,
    SessionKey,
    SessionNotFoundError,
    SessionStartError,
    Supervisor,
    SupervisorClosedError,
    Turn,
    TurnCompleted,
    TurnFailed,
)

from .._settings import Settings
from ..wire._anthropic import RequestError, retry_headers, session_key_from
from ..wire._openai import (
    MODEL_IDS,
    Completion,
    _failure,
    _validate,
    chat_prompt,
    error_body,
)
from ..wire._sse import SSE_HEADERS, sse_comment
from ._requests import check_prompt, check_size, current_principal, json_object


def _error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> quart.Response:
    body = json.dumps(error_body(status, message, param=param, code=code))
    return quart.Response(body, status, headers or {}, content_type="application/json")


def _session_error(exc: SessionError) -> tuple[int, str | None, dict[str, str]]:
    """(status, code, headers) for a refusal by the supervisor."""
    match exc:
        case RetryLaterError():
            retry = {"Retry-After": str(exc.retry_after_s)}
            if not isinstance(exc, CapacityError):
                return 429, "rate_limit_exceeded", retry
            return 503, "server_is_overloaded", retry
        case SessionNotFoundError():
            return 404, None, {}
        case SessionStartError():
            return 502, "session_start_failed", {}
        case SupervisorClosedError():
            return 503, "server_shutting_down", {}
        case _:
            return 503, None, {}


def openai_blueprint(supervisor: Supervisor, settings: Settings) -> quart.Blueprint:
    """The OpenAI-compatible routes, as a blueprint for ``create_app`` to register.

    Args:
        supervisor: runs the turns.
        settings: ``sse_ping_interval_s`` (seconds of quiet before a keep-alive comment)
            and ``model`` (listed first by ``/v1/models``).

    Returns:
        A new ``quart.Blueprint`` named ``openai``, with its own error handlers.

    ``POST /v1/chat/completions`` runs one turn (sessions as for ``/v1/messages``: the
    ``X-Session-ID`` or ``X-Claude-Code-Session-Id`` header, or ``metadata.session_id``;
    the response echoes ``X-Session-ID``). ``GET /v1/models`` and ``GET /v1/models/<id>``
    list ``settings.model`` and ``MODEL_IDS``.

    Every error from these routes is OpenAI error JSON: a refused or malformed request is
    a 400, a full mailbox 429, no capacity 503 (both with ``Retry-After``), a failed turn
    its ``failure_error`` status. A client that disconnects cancels the route (or the
    stream's body); leaving ``open_turn`` then interrupts the turn.
    """
    blueprint = quart.Blueprint("openai", __name__)
    listed = tuple(dict.fromkeys([*([settings.model] if settings.model else []), *MODEL_IDS]))
    started = int(time.time())

    def model_json(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": started, "owned_by": "anthropic"}

    @blueprint.errorhandler(RequestError)
    async def request_error(exc: RequestError) -> quart.Response:
        param, code = getattr(exc, "param", None), getattr(exc, "code", None)
        return _error_response(exc.status, str(exc), param=param, code=code)

    @blueprint.errorhandler(ValidationError)
    async def validation_error(exc: ValidationError) -> quart.Response:
        return _error_response(400, str(exc))

    @blueprint.errorhandler(SessionError)
    async def session_error(exc: SessionError) -> quart.Response:
        status, code, headers = _session_error(exc)
        return _error_response(status, str(exc), code=code, headers=headers)

    @blueprint.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> quart.Response:
        status = exc.code or 500
        headers = (
            {"Allow": ", ".join(exc.valid_methods)} if isinstance(exc, MethodNotAllowed) else {}
        )
        return _error_response(status, exc.description or exc.name, headers=headers)

    @blueprint.post("/v1/chat/completions")
    async def chat_completions() -> quart.Response | tuple[dict[str, Any], int, dict[str, str]]:
        body = await json_object()
        req = _validate(body)
        key = session_key_from(quart.request.headers, body, current_principal())
        check_size(len(req.messages), settings)
        turn = Turn(check_prompt(chat_prompt(req, in_session=key is not None), settings))
        headers = {} if key is None else {"X-Session-ID": key.session_id}
        completion = Completion(turn.turn_id, req.model, include_usage=req.include_usage)
        if req.stream:
            stream = _stream(
                supervisor,
                key,
                turn,
                completion,
                settings.sse_ping_interval_s,
                principal=current_principal(),
            )
            await anext(stream)  # queues the turn: refusals become plain error responses
            response = quart.Response(stream, 200, {**SSE_HEADERS, **headers})
            response.timeout = None  # Quart would cut the stream after 60 s
            return response
        async with supervisor.open_turn(key, turn, principal=current_principal()) as events:
            collected = [event async for event in events]
        match collected[-1] if collected else None:
            case TurnCompleted() as done:
                return completion.object(collected, done), 200, headers
            case TurnFailed() as failed:
                status, error = _failure(failed)
                return error, status, {**headers, **retry_headers(failed)}
            case _:
                return error_body(503, "the session closed", code="session_closed"), 503, headers

    @blueprint.route("/v1/chat/completions", methods=["GET", "PUT", "PATCH", "DELETE"])
    async def chat_completions_other_methods() -> quart.Response:
        raise MethodNotAllowed(valid_methods=["POST"])

    @blueprint.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_json(model_id) for model_id in listed]}

    @blueprint.get("/v1/models/<model_id>")
    async def model(model_id: str) -> dict[str, Any] | quart.Response:
        if model_id not in listed:
            message = f"The model {model_id!r} does not exist"
            return _error_response(404, message, param="model", code="model_not_found")
        return model_json(model_id)

    return blueprint


async def _stream(
    supervisor: Supervisor,
    key: SessionKey | None,
    turn: Turn,
    completion: Completion,
    ping_s: float,
    *,
    principal: str = "",
) -> AsyncIterator[bytes]:
    """The SSE body of a streaming completion. Its first (empty) item is yielded once the
    turn is queued, so the route can still answer a refusal with a status code.

    When ``ping_s`` seconds pass with nothing sent (events that have no chunk, such as
    thinking and Claude Code's tool activity, count as nothing), a ``: ping`` comment
    goes out. No yield happens inside a cancel scope. A client that disconnects cancels
    the task iterating this generator; leaving ``open_turn`` then interrupts the turn.
    """
    async with supervisor.open_turn(key, turn, principal=principal) as events:
        yield b""
        yield completion.start()
        deadline = trio.current_time() + ping_s
        while not completion.finished:
            frames = [sse_comment("ping")]
            with trio.move_on_at(deadline):
                try:
                    frames = completion.encode(await events.receive())
                except trio.EndOfChannel:
                    frames = completion.end_early()
            for frame in frames:
                yield frame
            if frames:
                deadline = trio.current_time() + ping_s
