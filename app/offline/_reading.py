"""Reading what the ``claude`` CLI sends the offline upstream: the latest user text, tool
results, block types, structured-output schemas, and the reply text they call for."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from typing import Any

from ..wire._text import INTERRUPT_MARKER, SYSTEM_REMINDER
from ._directives import COUNT_TOKEN, Directives, JSONObject

# What the CLI appends to a prompt holding an image (where it saved it); not typed either.
_IMAGE_MARKER = re.compile(r"\[Image: source: [^\]]*\]")


def tool_results(messages: Sequence[object]) -> list[dict[str, Any]]:
    """The ``tool_result`` blocks of the last message, if it is the user's."""
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return []
    content = last.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    status = "error" if block.get("is_error") else "result"
    return f"tool {status}: {content}"


def _user_text(message: object) -> str | None:
    """The prompt a user typed in one message: its last text block that still has text
    once ``<system-reminder>`` sections and the CLI's ``[Request interrupted by user]``
    and ``[Image: source: <path>]`` markers are removed.

    The CLI puts its reminders in blocks before the prompt block, and merges a user
    message whose turn failed with the next one; the last block is the newest prompt.

    Args:
        message: One entry of a Messages API ``messages`` list. Content may be a string
            or a list of blocks; only ``text`` blocks count (``tool_result`` and other
            blocks contribute nothing).

    Returns:
        That text, stripped (``""`` if none), or ``None`` if ``message`` is not a
        ``user`` message.
    """
    if not isinstance(message, dict) or message.get("role") != "user":
        return None
    content = message.get("content")
    if isinstance(content, str):
        texts = [content]
    elif isinstance(content, list):
        texts = [
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        ]
    else:
        texts = []
    cleaned = (_typed(text) for text in texts)
    return next((text for text in reversed(list(cleaned)) if text), "")


def _typed(text: str) -> str:
    """A text block's text without what the CLI adds (reminders, interrupt and image
    markers), stripped."""
    for added in (SYSTEM_REMINDER, INTERRUPT_MARKER, _IMAGE_MARKER):
        text = added.sub("", text)
    return text.strip()


def latest_user_text(messages: Sequence[object]) -> str:
    """The text of the most recent user message that has any; see :func:`_user_text`.

    A trailing user message that holds only ``tool_result`` blocks has empty text, so
    the reply is driven by the prompt before it.

    Args:
        messages: A Messages API ``messages`` list.

    Returns:
        That text, or ``""`` if no user message has text.
    """
    for message in reversed(messages):
        if text := _user_text(message):
            return text
    return ""


def _prompt_blocks(messages: Sequence[object]) -> list[dict[str, Any]]:
    """The content blocks of the latest user message with text (see
    :func:`latest_user_text`): a string content as one text block."""
    for message in reversed(messages):
        if _user_text(message):
            content = message["content"]  # type: ignore[index]
            if isinstance(content, str):
                return [{"type": "text", "text": content}]
            return [block for block in content if isinstance(block, dict)]
    return []


def _block_types(messages: Sequence[object]) -> list[str]:
    """The content block types of the latest user message with text (see
    :func:`latest_user_text`), reminder-only text blocks left out."""
    return [
        str(block.get("type"))
        for block in _prompt_blocks(messages)
        if not (block.get("type") == "text" and not _typed(str(block.get("text", ""))))
    ]


def _media_counts(messages: Sequence[object]) -> str:
    """``images=N documents=M``: the ``image`` and ``document`` blocks of the latest user
    message with text, whatever their sources (base64, URL, text)."""
    kinds = [block.get("type") for block in _prompt_blocks(messages)]
    return f"images={kinds.count('image')} documents={kinds.count('document')}"


def reply_text(messages: Sequence[object], directives: Directives) -> str:
    if results := tool_results(messages):
        return " | ".join(_result_text(block) for block in results)
    if directives.blocks:
        return f"blocks={','.join(_block_types(messages))}"
    if directives.media:
        return _media_counts(messages)
    if directives.count:
        texts = (_user_text(message) for message in messages)
        return f"count={sum(1 for text in texts if text and COUNT_TOKEN in text)}"
    return f"echo: {latest_user_text(messages)}"


SYSTEM_TAIL = 100  # characters of the system prompt a [[system]] reply shows


def system_text(body: JSONObject) -> str:
    """The request's system prompt as text: the string, or its text blocks joined by
    blank lines (Claude Code sends a list: a billing header, its identity, the prompt)."""
    system = body.get("system")
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        return ""
    return "\n\n".join(
        block["text"]
        for block in system
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    )


def request_text(body: JSONObject, directives: Directives) -> str | None:
    """The reply to ``[[model]]`` and ``[[system]]`` (``model=<the request's model>``,
    ``system=<N> chars ending: <its last SYSTEM_TAIL characters>``, in that order and
    space-separated), or None if neither is asked for."""
    parts = []
    if directives.model:
        parts.append(f"model={body.get('model')}")
    if directives.system:
        text = system_text(body)
        parts.append(f"system={len(text)} chars ending: {text[-SYSTEM_TAIL:]}")
    return " ".join(parts) or None


def output_schema(body: JSONObject) -> JSONObject | None:
    """The JSON schema the request asks the reply to follow, if any."""
    output_config = body.get("output_config")
    if not isinstance(output_config, dict):
        return None
    output_format = output_config.get("format")
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        return None
    schema = output_format.get("schema")
    return schema if isinstance(schema, dict) else {}


def fit_schema(schema: JSONObject, text: str) -> Any:
    """A JSON value of ``schema``'s shape whose strings are all ``text``."""
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {
            name: fit_schema(sub, text) for name, sub in properties.items() if isinstance(sub, dict)
        }
    return {"array": [], "boolean": False, "integer": 0, "number": 0, "null": None}.get(kind, text)


def split_text(text: str, pieces: int) -> list[str]:
    """Cut ``text`` (padded with ``.`` to at least ``pieces`` chars) into ``pieces`` parts."""
    text = text.ljust(pieces, ".")
    size, extra = divmod(len(text), pieces)
    bounds = [index * size + min(index, extra) for index in range(pieces + 1)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def estimate_tokens(characters: int) -> int:
    return characters // 4 + 1


def count_input_tokens(messages: Sequence[object]) -> int:
    return estimate_tokens(len(json.dumps(messages, separators=(",", ":"))))
