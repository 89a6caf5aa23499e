"""Server-sent events framing.

Format: the WHATWG HTML Living Standard, section "Server-sent events"
(``event:`` and ``data:`` lines, a blank line ending each event; ``:`` starts a comment).
Encoding a frame is a few lines; decoding, which is harder, is left to ``httpx-sse`` and
the official clients.
"""

from __future__ import annotations

import json
from typing import Any

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def encode_sse(event: str | None, data: Any) -> bytes:
    """One SSE frame: ``event: NAME`` (if given) and ``data: <compact JSON>``.

    ``data`` is JSON-encoded unless it is already a ``str``; JSON has no raw newlines,
    so a frame is always one ``data:`` line. Not a checkpoint.
    """
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    lines = [] if event is None else [f"event: {event}"]
    lines.extend(f"data: {line}" for line in payload.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def sse_comment(text: str = "") -> bytes:
    """A comment frame (``: text``), ignored by clients: used as a keep-alive."""
    return f": {text}\n\n".encode()
