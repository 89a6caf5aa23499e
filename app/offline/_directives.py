"""The directives of the offline upstream: ``[[name=value]]`` tokens in the latest user
text that script its reply (the grammar is in ``app.offline._upstream``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..wire import _json

JSONObject = dict[str, Any]

_DIRECTIVE = re.compile(r"\[\[([a-z_]+)(?:=([^\]]*))?\]\]")
COUNT_TOKEN = "[[count]]"
_DAY_S = 86_400.0
# Directives with a value: name -> (type, lowest, highest allowed value).
_DIRECTIVE_RANGES: dict[str, tuple[type[float], float, float]] = {
    "chunks": (int, 1, 100_000),
    "stall_after": (int, 0, 100_000),
    "chunk_delay": (float, 0.0, _DAY_S),
    "delay_first": (float, 0.0, _DAY_S),
    "error": (int, 400, 599),
}


@dataclass(frozen=True)
class Directives:
    """The directives found in one user text; see the module docstring for meanings."""

    count: bool = False
    blocks: bool = False
    model: bool = False
    system: bool = False
    media: bool = False
    chunks: int | None = None
    chunk_delay: float = 0.0
    delay_first: float = 0.0
    stall_after: int | None = None
    error: int | None = None
    tool: tuple[str, dict[str, Any]] | None = None  # (name, input) to call

    @property
    def delta_count(self) -> int:
        """How many text deltas the streamed reply has."""
        if self.chunks is not None:
            return self.chunks
        if self.stall_after is not None:
            return self.stall_after + 1
        return 1


def _parse_value(name: str, value: str | None, kind: type[float], low: float, high: float) -> Any:
    try:
        number = kind(value or "")
    except ValueError:
        raise ValueError(f"[[{name}=...]] needs a number, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"[[{name}={value}]] is outside {low}..{high}")
    return number


def parse_directives(text: str) -> Directives:
    """Parse the ``[[name]]`` / ``[[name=value]]`` directives in a user text.

    Unknown names are ignored. When a directive appears twice, the last one wins.

    Args:
        text: The latest user text.

    Returns:
        The directives found; defaults for the ones that are absent.

    Raises:
        ValueError: A known directive has a missing or malformed value.
    """
    found: dict[str, Any] = {}
    for match in _DIRECTIVE.finditer(text):
        name, value = match.group(1), match.group(2)
        if name in ("count", "blocks", "model", "system", "media"):
            found[name] = True
        elif name == "tool":
            found["tool"] = _parse_tool(value)
        elif name in _DIRECTIVE_RANGES:
            found[name] = _parse_value(name, value, *_DIRECTIVE_RANGES[name])
    return Directives(**found)


def _parse_tool(value: str | None) -> tuple[str, dict[str, Any]]:
    """``NAME:{json object}`` (or just ``NAME``) -> (name, input). ValueError if bad."""
    name, _, raw = (value or "").partition(":")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"[[tool=...]] needs a tool name, got {value!r}")
    try:
        tool_input = _json.loads(raw) if raw else {}
    except ValueError:
        raise ValueError(f"[[tool={name}:...]]: the input is not JSON") from None
    if not isinstance(tool_input, dict):
        raise ValueError(f"[[tool={name}:...]]: the input must be a JSON object")
    return name, tool_input
