"""User messages as Claude Code reads them: text, never a command unless allowed.

Claude Code runs a message that starts with ``/`` as one of its slash commands
(``/init`` replaces the message with its own long prompt, ``/cost`` answers locally, a
custom command may run anything its definition says), both for a plain string and for a
first text block. Measured on Claude Code 2.1.197 and 2.1.327: a message that starts
with a space is taken as text and reaches the model without that space. So a message
whose command is not allowed gets one leading space, and stays the user's text.
"""

from __future__ import annotations

from collections.abc import Collection

from ._client import Prompt


def command_name(text: str) -> str | None:
    """The slash command ``text`` would run (``"compact"`` for ``"/compact now"``), or
    ``None`` if it does not start with ``/``. Not a checkpoint."""
    if not text.startswith("/"):
        return None
    words = text[1:].split(maxsplit=1)
    return words[0] if words else ""


def as_user_text(content: Prompt, allowed: Collection[str] = ()) -> Prompt:
    """``content`` as Claude Code should read it: unchanged, unless it starts with a slash
    command not in ``allowed``; then with one leading space, so it is the user's text.

    Args:
        content: a message's text, or its content blocks (only a first ``text`` block can
            be a command).
        allowed: command names a deployment lets users run (setting ``slash_commands``).

    Returns:
        The same content, or a copy with the first text prefixed by a space. Not a
        checkpoint.
    """
    if isinstance(content, str):
        return _literal(content, allowed)
    if content and content[0].get("type") == "text" and isinstance(content[0].get("text"), str):
        first = {**content[0], "text": _literal(content[0]["text"], allowed)}
        return [first, *content[1:]]
    return content


def _literal(text: str, allowed: Collection[str]) -> str:
    name = command_name(text)
    return text if name is None or name in allowed else f" {text}"
