"""Which session a request names: its session id from the headers or body (as
Anthropic's, Claude Code's and OpenAI's clients send one), as the caller's validated
``SessionKey``."""

from __future__ import annotations

import re
from typing import Any

from actors import InvalidSessionIdError, SessionKey

from ..wire import _json
from ..wire._problems import RequestError

_LEGACY_USER_ID = re.compile(r"_session_([0-9A-Za-z-]+)$")


def session_id_from(headers: Any, body: dict[str, Any]) -> str | None:
    """The caller's session id, first match wins: header ``X-Session-ID``; header
    ``X-Claude-Code-Session-Id``; ``metadata.user_id`` (legacy ``..._session_<uuid>``
    suffix, or a JSON string with ``session_id``); ``metadata.session_id``.

    Returns ``None`` if there is none. Not validated here (``SessionKey`` validates).
    Not a checkpoint.
    """
    for header in ("X-Session-ID", "X-Claude-Code-Session-Id"):
        if value := headers.get(header):
            return value
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return None
    user_id = metadata.get("user_id")
    if isinstance(user_id, str) and user_id:
        if match := _LEGACY_USER_ID.search(user_id):
            return match.group(1)
        try:
            decoded = _json.loads(user_id)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and isinstance(decoded.get("session_id"), str):
            return decoded["session_id"]
    session_id = metadata.get("session_id")
    return session_id if isinstance(session_id, str) and session_id else None


def session_key(session_id: str, principal: str = "") -> SessionKey:
    """A session id (from a URL, a header or a body) as the caller's key. Not a checkpoint.

    Raises:
        RequestError: the session id is not of the allowed form (400).
    """
    try:
        return SessionKey(session_id, principal)
    except InvalidSessionIdError as exc:
        raise RequestError(f"invalid session id: {exc}") from None


def resolve_session(headers: Any, body: dict[str, Any], principal: str = "") -> SessionKey | None:
    """``session_id_from`` as a validated key (``None`` without a session id).

    Raises:
        RequestError: as ``session_key``.
    """
    session_id = session_id_from(headers, body)
    return None if session_id is None else session_key(session_id, principal)
