"""Reading request bodies: shared by every front end."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from quart import request

from ._anthropic import RequestError
from ._settings import Settings


async def json_object() -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        RequestError: the body is not JSON, or not an object (a 400 in each API's format).
    """
    raw = await request.get_data()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def check_size(messages: int, settings: Settings) -> None:
    """Raises ``RequestError`` (400) for more than ``max_messages`` messages."""
    if messages > settings.max_messages:
        raise RequestError(f"too many messages: {messages} (at most {settings.max_messages})")


def check_prompt(prompt: str, settings: Settings) -> str:
    """The prompt, if within ``max_prompt_chars``; else ``RequestError`` (400)."""
    if len(prompt) > settings.max_prompt_chars:
        raise RequestError(
            f"the message is too long: {len(prompt)} characters "
            f"(at most {settings.max_prompt_chars})"
        )
    return prompt


def describe(error: ValidationError, root: str = "body") -> str:
    """A pydantic validation error as ``field.path: problem; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or root}: {item['msg']}" for item in error.errors()
    )
