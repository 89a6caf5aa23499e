"""SessionEvents as plain JSON objects: the format of the session event stream
(``GET /v1/sessions/{id}/events``) and of WebSocket messages.

Each object has ``type`` (``turn_started``, ``text_delta``, ``thinking_delta``,
``tool_use``, ``tool_result``, ``turn_completed``, ``turn_failed``, ``lagged``) and the
event's fields under their own names.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from actors import Lagged, SessionEvent


def event_type(event: SessionEvent | Lagged) -> str:
    """``TextDelta`` -> ``text_delta``. Not a checkpoint."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()


def event_json(event: SessionEvent | Lagged) -> dict[str, Any]:
    """The event as a JSON-ready dict with its ``type``. Not a checkpoint."""
    return {"type": event_type(event), **dataclasses.asdict(event)}
