"""What goes wrong with a request, in no API's words: each codec words it its own way."""

from __future__ import annotations

from pydantic import ValidationError


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
