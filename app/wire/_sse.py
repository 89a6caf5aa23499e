"""Server-sent events framing.

Format: the WHATWG HTML Living Standard, section "Server-sent events"
(``event:`` and ``data:`` lines, a blank line ending each event; ``:`` starts a comment).
Encoding a frame is a few lines; decoding, which is harder, is left to ``httpx-sse`` and
the official clients.
"""

from __future__ import annotations

from typing import Any

from ._json import dumps

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def encode_sse(event: str, data: dict[str, Any]) -> bytes:
    """One SSE frame: ``event: NAME`` and ``data: <JSON>``, then a blank line.

    The JSON is compact and on one line (JSON strings escape newlines), UTF-8, as
    Anthropic's streaming responses send it. Not a checkpoint.
    """
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def encode_sse_data(data: dict[str, Any]) -> bytes:
    """One SSE frame with only a ``data:`` line (compact JSON), as OpenAI streams."""
    return b"data: " + dumps(data) + b"\n\n"


def sse_comment(text: str = "") -> bytes:
    """A comment frame (``: text``), ignored by clients: used as a keep-alive."""
    return f": {text}\n\n".encode()
