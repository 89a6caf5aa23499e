"""The OpenAI-compatible routes: ``POST /v1/chat/completions``, ``GET /v1/models``.

Thin: the turn goes through the pipeline (``app.http._pipeline``) with the OpenAI codec
(``app.wire._openai``); this module adds the model list and OpenAI-worded errors.
"""

from __future__ import annotations

import time
from typing import Any

import quart
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from actors import SessionError, Supervisor

from .._settings import Settings
from ..sessions._lineage_index import LineageIndex
from ..wire._openai import MODEL_IDS, ChatCompletionRequest, OpenAICodec, error_json
from ..wire._problems import ERROR_TYPES, Problem, RequestError, problem_for, request_problem
from ._pipeline import problem_response, serve_turn
from ._route_docs import TURN_REFUSALS, Doc, Reply, documented, not_documented
from ._shapes import ChatCompletion, Model, ModelList, OpenAIError

CODEC = OpenAICodec()


def _error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> quart.Response:
    kind = ERROR_TYPES.get(status, "api_error")
    response = problem_response(Problem(status, kind, message, param=param, code=code), error_json)
    response.headers.update(headers or {})
    return response


def openai_blueprint(
    supervisor: Supervisor, settings: Settings, lineage: LineageIndex | None = None
) -> quart.Blueprint:
    """The OpenAI-compatible routes, as a blueprint for ``create_app`` to register.

    Args:
        supervisor: runs the turns.
        settings: ``sse_ping_interval_s`` (seconds of quiet before a keep-alive comment),
            ``model`` (listed first by ``/v1/models``) and ``model_aliases`` (listed
            last), and what the pipeline reads.
        lineage: places each turn by its conversation (as for ``/v1/messages``).

    Returns:
        A new ``quart.Blueprint`` named ``openai``, with its own error handlers.

    ``POST /v1/chat/completions`` runs one turn (sessions as for ``/v1/messages``: the
    ``X-Session-ID`` or ``X-Claude-Code-Session-Id`` header, or ``metadata.session_id``;
    the response echoes ``X-Session-ID``). ``GET /v1/models`` and ``GET /v1/models/<id>``
    list ``settings.model``, ``MODEL_IDS`` and the names of ``settings.model_aliases``:
    each a name a request may send (any other ``claude-*`` id is accepted too).

    Every error from these routes is OpenAI error JSON: a refused or malformed request is
    a 400, a full mailbox 429, no capacity 503 (both with ``Retry-After``), a failed turn
    its ``failure_error`` status. A client that disconnects cancels the route (or the
    stream's body); leaving ``open_turn`` then interrupts the turn.
    """
    blueprint = quart.Blueprint("openai", __name__)
    default = [settings.model] if settings.model else []
    listed = tuple(dict.fromkeys([*default, *MODEL_IDS, *settings.model_aliases]))
    started = int(time.time())

    def model_json(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": started, "owned_by": "anthropic"}

    @blueprint.errorhandler(RequestError)
    async def request_error(exc: RequestError) -> quart.Response:
        return problem_response(request_problem(exc), error_json)

    @blueprint.errorhandler(ValidationError)
    async def validation_error(exc: ValidationError) -> quart.Response:
        return _error_response(400, str(exc))

    @blueprint.errorhandler(SessionError)
    async def session_error(exc: SessionError) -> quart.Response:
        return problem_response(problem_for(exc), error_json)

    @blueprint.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> quart.Response:
        status = exc.code or 500
        headers = (
            {"Allow": ", ".join(exc.valid_methods)} if isinstance(exc, MethodNotAllowed) else {}
        )
        return _error_response(status, exc.description or exc.name, headers=headers)

    @blueprint.post("/v1/chat/completions")
    @documented(CHAT_DOC)
    async def chat_completions() -> quart.Response:
        return await serve_turn(CODEC, supervisor, settings, lineage)

    @blueprint.route("/v1/chat/completions", methods=["GET", "PUT", "PATCH", "DELETE"])
    @not_documented("only answers 405, in OpenAI's error format, for the methods it lacks")
    async def chat_completions_other_methods() -> quart.Response:
        raise MethodNotAllowed(valid_methods=["POST"])

    @blueprint.get("/v1/models")
    @documented(MODELS_DOC)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_json(model_id) for model_id in listed]}

    @blueprint.get("/v1/models/<model_id>")
    @documented(MODEL_DOC)
    async def model(model_id: str) -> dict[str, Any] | quart.Response:
        if model_id not in listed:
            message = f"The model {model_id!r} does not exist"
            return _error_response(404, message, param="model", code="model_not_found")
        return model_json(model_id)

    return blueprint


# -- What each route takes and answers (GET /openapi.json) ----------------------------

CHAT_DOC = Doc(
    summary="Create a chat completion (OpenAI Chat Completions API)",
    tag="OpenAI",
    description="One turn of a session: a `chat.completion`, or (`stream: true`) "
    "`chat.completion.chunk` objects as `data:` lines ending in `data: [DONE]` (a turn "
    'that fails mid-stream sends `data: {"error": ...}` first). docs/openai.md has the '
    "field policy: unsupported fields are refused with `400` naming them.",
    body=ChatCompletionRequest,
    errors="openai",
    examples={
        "completion": {
            "model": "claude-sonnet-4-6",
            "messages": [{"role": "user", "content": "Hello"}],
        },
        "stream": {
            "model": "claude-sonnet-4-6",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Hello again"}],
        },
    },
    headers=("X-Session-ID", "X-Claude-Code-Session-Id", "X-Request-ID"),
    replies=(
        Reply(
            200,
            "The answer: a `chat.completion`, or (`stream: true`) its chunks, as OpenAI "
            "documents them.",
            model=ChatCompletion,
            events={"message": None},
            headers=("X-Session-ID",),
        ),
    ),
    refusals=TURN_REFUSALS,
)
MODELS_DOC = Doc(
    summary="List the models a request may name",
    tag="OpenAI",
    errors="openai",
    description="The server's default model, Claude model ids and the configured "
    "aliases; any other `claude-*` id is accepted too.",
    replies=(Reply(200, "The models.", model=ModelList),),
)
MODEL_DOC = Doc(
    summary="One model",
    tag="OpenAI",
    errors="openai",
    params={"model_id": "A model id from `GET /v1/models`."},
    replies=(
        Reply(200, "The model.", model=Model),
        Reply(404, "Not a listed model (`model_not_found`).", model=OpenAIError),
    ),
)
