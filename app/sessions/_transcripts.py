"""Reading and deleting the Claude Code CLI's conversation transcripts.

The CLI keeps each conversation as JSON lines at
``$CLAUDE_CONFIG_DIR/projects/<encoded working directory>/<claude session id>.jsonl``;
each line has a ``type`` (``user``, ``assistant``, and bookkeeping types) and, for
messages, an Anthropic-style ``message`` with ``role`` and ``content``. This format is the
CLI's own (not a documented API); what is not understood is skipped, never fatal.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..wire._text import SYSTEM_REMINDER

log = logging.getLogger(__name__)

_CLAUDE_SESSION_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


def transcript_paths(config_dir: Path, claude_session_id: str) -> list[Path]:
    """The transcript files of one conversation (normally one). Blocking file access."""
    if not _CLAUDE_SESSION_ID.fullmatch(claude_session_id):
        return []
    return sorted(config_dir.glob(f"projects/*/{claude_session_id}.jsonl"))


def read_conversation(config_dir: Path, claude_session_id: str) -> list[dict[str, Any]]:
    """The conversation so far as ``[{"role": "user"|"assistant", "content": [blocks]}]``.

    Blocks are Anthropic content blocks as the CLI stored them (``text``, ``thinking``,
    ``tool_use``, ``tool_result``), minus the CLI's ``<system-reminder>`` text;
    consecutive entries of one role are merged into one message. Blocking file access:
    call it in a worker thread. Unreadable lines are skipped (and logged).
    """
    return conversation_of(_entries(transcript_paths(config_dir, claude_session_id)))


def _entries(paths: list[Path]) -> Iterator[Any]:
    for path in paths:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            try:
                yield json.loads(line)
            except ValueError:
                log.warning("%s:%d is not JSON; skipped", path, number)


def conversation_of(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """``read_conversation`` from transcript entries (the JSON lines, decoded), wherever
    they are kept (a file, or the cluster's shared store). Not a checkpoint."""
    messages: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") not in ("user", "assistant"):
            continue
        if entry.get("isMeta"):
            continue
        message = entry.get("message")
        if not isinstance(message, dict):
            continue
        blocks = _blocks(message.get("content"))
        if not blocks:
            continue
        role = "assistant" if entry["type"] == "assistant" else "user"
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    blocks = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text = SYSTEM_REMINDER.sub("", str(block.get("text", ""))).strip()
            if text:
                blocks.append({"type": "text", "text": text})
        elif block.get("type") in ("thinking", "tool_use", "tool_result"):
            blocks.append(block)
    return blocks


def delete_conversation(config_dir: Path, claude_session_id: str) -> int:
    """Delete a conversation's transcript files; returns how many. Blocking file access."""
    paths = transcript_paths(config_dir, claude_session_id)
    for path in paths:
        path.unlink(missing_ok=True)
    return len(paths)
