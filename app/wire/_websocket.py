"""The WebSocket session protocol's messages: client messages in, frames out (see
``app.http._websocket`` for the protocol)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from actors import SessionError

from . import _json
from ._anthropic import error_body
from ._codec import Message, TurnRequest
from ._problems import describe, problem_for

Frame = dict[str, Any]


class TurnMessage(BaseModel):
    """``{"type": "turn", "content": ..., "id"?: ...}``: a new user message."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["turn"]
    content: str = Field(min_length=1)
    model: str | None = None
    id: str | None = Field(None, max_length=256)


class InterruptMessage(BaseModel):
    """``{"type": "interrupt", "id"?: ...}``: stop the session's running turn."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["interrupt"]
    id: str | None = Field(None, max_length=256)


class PermissionResponseMessage(BaseModel):
    """``{"type": "permission_response", "request_id": ..., "allow": bool, "message"?: ...}``:
    the answer to a ``permission_request`` (``ask`` permission mode)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["permission_response"]
    request_id: str = Field(min_length=1, max_length=256)
    allow: bool
    message: str | None = Field(None, max_length=4096)
    id: str | None = Field(None, max_length=256)


AnyClientMessage = TurnMessage | InterruptMessage | PermissionResponseMessage
ClientMessage = Annotated[AnyClientMessage, Field(discriminator="type")]
_client_message = TypeAdapter[AnyClientMessage](ClientMessage)


class BadMessageError(Exception):
    """A client message that is not valid; ``id`` is its ``id`` if it had a usable one."""

    def __init__(self, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.id = id


def parse_client_message(data: str | bytes | None) -> AnyClientMessage:
    """Parse one client frame. Not a checkpoint.

    Raises:
        BadMessageError: not a JSON text frame (or nested too deeply, see ``app.wire._json``),
            or not a known message; the error says which field is wrong.
    """
    if not isinstance(data, str):  # quart-trio gives None for an empty binary frame
        raise BadMessageError("send JSON text frames, not binary ones")
    try:
        raw = _json.loads(data)
    except ValueError as exc:
        raise BadMessageError(f"the message is not valid JSON: {exc}") from None
    id = raw.get("id") if isinstance(raw, dict) else None
    id = id if isinstance(id, str) else None
    try:
        return _client_message.validate_python(raw)
    except ValidationError as exc:
        raise BadMessageError(describe(exc, root="message"), id) from None


def turn_request(message: TurnMessage) -> TurnRequest:
    """The pipeline's request for a ``turn`` message: its content as the user's new
    message in the connection's session, on its ``model`` if it names one (else the
    session's current model). Not a checkpoint."""
    model = message.model or ""
    return TurnRequest(model=model, messages=[Message("user", message.content)], size=1)


def error_frame(
    status: int, message: str, *, id: str | None = None, retry_after_s: int | None = None
) -> Frame:
    """An ``error`` frame: Anthropic's error JSON for ``status``, plus the client's
    ``id`` and ``retry_after_s`` (seconds) when given. Not a checkpoint."""
    frame = error_body(status, message)
    if retry_after_s is not None:
        frame["error"]["retry_after_s"] = retry_after_s
    return _with_id(frame, id)


def refusal_frame(exc: SessionError, id: str | None = None) -> Frame:
    """The ``error`` frame for a turn the supervisor refused (``problem_for``). Not a
    checkpoint."""
    problem = problem_for(exc)
    return error_frame(problem.status, problem.message, id=id, retry_after_s=problem.retry_after_s)


def _with_id(frame: Frame, id: str | None) -> Frame:
    return frame if id is None else {**frame, "id": id}
