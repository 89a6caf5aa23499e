"""Parsing untrusted JSON: request bodies, WebSocket frames, JSON inside JSON fields.

``json.loads`` recurses in C once per nesting level and raises ``RecursionError`` (not a
``ValueError``) on a document such as 100,000 ``[``: a 500 for an HTTP request, a
dropped connection for a WebSocket. pydantic-core's parser (jiter, in Rust) refuses
nesting deeper than its recursion limit, ``MAX_DEPTH``, with an ordinary ``ValueError``,
and whatever it returns is shallow enough for every later step (pydantic validation,
``json.dumps``, our own code) to walk without approaching Python's recursion limit.

Only object keys go through jiter's string cache: by default it also keeps every string
value of up to 64 bytes (16,384 of them, process-wide) to hand back the same object when
the same text comes again. Request bodies repeat their keys, not their values, so the
values gained nothing from it, and it kept clients' prompts and replies in the server's
memory long after their requests: ~70 B a turn, a third of what a hibernated session
costs (docs/reference/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json, to_json

# jiter's recursion limit: arrays and objects nested deeper than this are refused.
MAX_DEPTH = 200


def loads(data: str | bytes) -> Any:
    """Parse one JSON document (UTF-8 if bytes), refusing pathological nesting.

    Accepts what ``json.loads`` accepts (``NaN`` and ``Infinity`` included), except
    nesting deeper than about ``MAX_DEPTH`` and lone UTF-16 surrogate escapes (which
    could not be passed on as UTF-8 anyway). Not a checkpoint; linear in ``len(data)``.

    Args:
        data: the document.

    Returns:
        The parsed value (dicts, lists, str, int, float, bool, None).

    Raises:
        ValueError: not valid JSON, or nested too deeply; the message says where.
    """
    return from_json(data, cache_strings="keys")


def is_json_media_type(value: str | None) -> bool:
    """Whether a ``Content-Type`` value is ``application/json`` (any case, parameters
    such as ``charset`` allowed). Not a checkpoint."""
    return value is not None and value.split(";", 1)[0].strip().lower() == "application/json"


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON (no spaces), UTF-8, non-ASCII characters unescaped;
    a float that JSON cannot hold (NaN, infinities) becomes ``null``. Not a checkpoint.

    pydantic-core's serializer (in Rust): about ten times quicker than ``json.dumps``
    with the same output for the dicts, lists, strings and numbers the wire formats send,
    which matters once per streamed delta.
    """
    return to_json(value)
