"""Which model a request's turn runs on: the request's ``model`` name resolved by the
server's settings (``model_aliases``, ``unknown_model``) to a name Claude Code's
``set_model`` takes (a Claude model id or one of Claude Code's aliases).

A request's model name is client input: it is checked against ``REQUEST_MODEL`` before
anything else, and only a name of the strict form ``CLAUDE_MODEL``, an operator's alias
target, or the server's default ever reaches Claude Code (and only through its control
protocol, never its arguments or environment).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from ._problems import RequestError

REQUEST_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+\[\]-]{0,255}")
"""A well-formed model name in a request (Anthropic and OpenAI ids, Claude Code aliases,
gateway names such as ``anthropic/claude-sonnet-4.5`` or ``llama3:8b``); anything else
(spaces, control characters, over 256 characters) is a 400 whatever the policy."""

CLAUDE_MODEL = re.compile(r"claude-[a-z0-9]+(?:[.-][a-z0-9]+)*(?:\[[a-z0-9]+\])?")
"""A Claude model id, taken as is (``claude-sonnet-4-6``, ``claude-opus-4-1-20250805``,
with Claude Code's context suffix such as ``[1m]``)."""

CLAUDE_CODE_ALIASES = {"opus": "opus", "sonnet": "sonnet", "haiku": "haiku"}
"""The default ``model_aliases``: Claude Code's own aliases, which the CLI resolves to
the newest model of each family (measured on Claude Code 2.1.327: ``sonnet`` answers as
``claude-sonnet-5-5``)."""

DEFAULT_MODEL = "default"
"""Claude Code's name for its own default model (what it runs without ``--model``)."""

UnknownModel = Literal["default", "refuse"]


def resolve_model(
    requested: str,
    *,
    aliases: Mapping[str, str],
    unknown: UnknownModel,
    default: str,
) -> str | None:
    """The model a request's turn runs on. Not a checkpoint.

    Args:
        requested: the request's ``model`` (``""``: none was given, as a WebSocket turn
            may omit it).
        aliases: accepted names and what each runs (setting ``model_aliases``); looked up
            first, by exact name.
        unknown: what a well-formed name that is neither an alias nor a Claude model id
            (e.g. ``gpt-4o``) runs: ``default`` runs ``default``, ``refuse`` is a 400.
        default: the server's default model (setting ``model``, else ``DEFAULT_MODEL``).

    Returns:
        The alias's target, the Claude model id as is, ``default`` for an unknown name
        (policy ``default``), or ``None`` for no name (the session's current model).

    Raises:
        RequestError: a malformed name, or an unknown one under ``refuse`` (400,
            ``param`` ``model``).
    """
    if requested == "":
        return None
    if not REQUEST_MODEL.fullmatch(requested):
        raise RequestError(
            "model: not a model name (1 to 256 characters of A-Z a-z 0-9 . _ : / @ + [ ] -, "
            "starting with a letter or digit)",
            param="model",
        )
    if requested in aliases:
        return aliases[requested]
    if CLAUDE_MODEL.fullmatch(requested):
        return requested
    if unknown == "default":
        return default
    accepted = ", ".join(sorted(aliases))
    raise RequestError(
        f"model {requested!r} is not a Claude model: use a Claude model id (claude-...)"
        + (f" or one of: {accepted}" if accepted else ""),
        param="model",
        code="model_not_found",
    )
