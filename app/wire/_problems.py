"""What goes wrong with a request, in no API's words: each codec words it its own way."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from actors import (
    CapacityError,
    RetryLaterError,
    SessionError,
    SessionNotFoundError,
    SessionStartError,
    SupervisorClosedError,
    TurnFailed,
)

# Anthropic's error types by HTTP status: the types every problem is named by (the
# OpenAI codec derives its own from the status).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    415: "invalid_request_error",
    421: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a request or its turn did not succeed, as every API reports it.

    Attributes:
        status: the HTTP status.
        type: the error type, in Anthropic's terms (``rate_limit_error``...).
        message: for people.
        retry_after_s: seconds to wait before retrying (``Retry-After``), if known.
        should_retry: ``False`` if a client must not retry by itself
            (``x-should-retry: false``); ``None`` leaves it to the client.
        param: the offending request field, if one is to blame.
        code: a machine-readable reason (``session_closed``, ``rate_limit_exceeded``...).
    """

    status: int
    type: str
    message: str
    retry_after_s: int | None = None
    should_retry: bool | None = None
    param: str | None = None
    code: str | None = None

    def headers(self) -> dict[str, str]:
        """``Retry-After`` and ``x-should-retry``, as they apply. Not a checkpoint."""
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        if self.should_retry is False:
            headers["x-should-retry"] = "false"
        return headers


class RequestError(Exception):
    """A client mistake: reported as a 400 (or ``status``) in the API's error JSON.

    ``param`` names the offending field (OpenAI reports it) and ``code`` says what is
    wrong with it (``unsupported_parameter``, ``unsupported_value``), when known.
    """

    def __init__(
        self, message: str, status: int = 400, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


def describe(error: ValidationError, root: str = "body") -> str:
    """A pydantic validation error as ``field.path: problem; ...``. Not a checkpoint."""
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or root}: {item['msg']}" for item in error.errors()
    )


# How a failed turn is reported: (HTTP status, error type).
FAILURE_STATUS = {
    "timeout": (504, "timeout_error"),
    "upstream_error": (502, "api_error"),
    "cli_error": (502, "api_error"),
    "session_closed": (503, "overloaded_error"),
    "interrupted": (409, "api_error"),
    "overloaded": (503, "overloaded_error"),
    "model_refused": (400, "invalid_request_error"),
}

SESSION_CLOSED = Problem(503, "overloaded_error", "the session closed", code="session_closed")


def problem_for(exc: SessionError) -> Problem:
    """The problem a refusal by the supervisor is reported as. Not a checkpoint.

    A full mailbox or a key over its share is 429 and no capacity 503, both with
    ``Retry-After``; an unknown session 404; a CLI that could not start 502; shutting
    down (or anything else) 503.
    """
    match exc:
        case CapacityError():
            return Problem(
                503, "overloaded_error", str(exc), exc.retry_after_s, code="server_is_overloaded"
            )
        case RetryLaterError():
            return Problem(
                429, "rate_limit_error", str(exc), exc.retry_after_s, code="rate_limit_exceeded"
            )
        case SessionNotFoundError():
            return Problem(404, "not_found_error", str(exc))
        case SessionStartError():
            return Problem(502, "api_error", str(exc), code="session_start_failed")
        case SupervisorClosedError():
            return Problem(503, "overloaded_error", str(exc), code="server_shutting_down")
        case _:
            return Problem(503, "overloaded_error", str(exc))


def failure_problem(failed: TurnFailed) -> Problem:
    """The problem a failed turn is reported as. Not a checkpoint.

    An API error the CLI got keeps its status (e.g. 429, 529), so clients can apply
    their own retry rules; one about the server's own credentials or endpoint is a 502.
    Every failure but an upstream error says ``x-should-retry: false``: the official
    clients retry 408, 409, 429 and 5xx by themselves, and a retry would put the same
    prompt into the conversation again.
    """
    status, kind = FAILURE_STATUS[failed.reason]
    upstream = failed.upstream_status
    if failed.reason == "upstream_error" and upstream in ERROR_TYPES:
        status = 502 if upstream in (401, 403, 404) else upstream
        kind = ERROR_TYPES[status]
    retry = failed.reason == "upstream_error"
    param = "model" if failed.reason == "model_refused" else None
    return Problem(
        status, kind, failed.message, should_retry=retry, param=param, code=failed.reason
    )


def request_problem(exc: RequestError) -> Problem:
    """The problem a client mistake is reported as. Not a checkpoint."""
    kind = ERROR_TYPES.get(exc.status, "api_error")
    return Problem(exc.status, kind, str(exc), param=exc.param, code=exc.code)
