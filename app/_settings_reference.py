"""The settings reference page (``docs/reference/settings.md``), generated from ``Settings``.

Every field of ``app._settings.Settings`` appears with its environment variable, its
TOML key, its type and bounds, its default and its ``description``. The page is
committed; ``tests/unit/test_settings_reference.py`` fails when it differs from what
``render_reference()`` makes now, and says how to regenerate it::

    uv run ccactors settings --reference > docs/reference/settings.md
"""

from __future__ import annotations

import json
import re
import shlex
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ._settings import Settings

REFERENCE_PATH = Path("docs/reference/settings.md")
REGENERATE = f"uv run ccactors settings --reference > {REFERENCE_PATH}"

# Sections of the page, each starting at its first field (fields follow the model's
# order, so a new field lands in the section of the fields around it).
SECTIONS = {
    "host": "Where it listens, what it runs",
    "max_sessions": "Sessions and CLI processes",
    "first_chunk_timeout_s": "Supervision: timeouts and restarts",
    "sse_ping_interval_s": "Connections",
    "model": "Claude Code: models, tools and system prompts",
    "max_body_bytes": "Request limits",
    "max_turns_per_key": "Limits per API key",
    "api_keys": "API keys and browser access",
    "log_level": "Logs",
    "database_url": "Cluster",
}

INTRO = """\
# Settings reference

<!-- Generated from the Settings model (app/_settings.py): edit the field descriptions
there, then run `{regenerate}`. -->

Every setting can be given three ways; the first that has it wins:

1. a command-line flag of `ccactors serve`: `--host`, `--port`, `--offline`,
   `--state-dir`, `--log-format`, `--insecure-no-auth`;
2. an environment variable `CCACTORS_<NAME>` (lists and tables as JSON:
   `CCACTORS_TOOLS='["Read", "Grep"]'`);
3. a key in the TOML file given with `ccactors serve --config ccactors.toml`
   (`tools = ["Read", "Grep"]`); a key that is not a setting stops the start, naming it;

and otherwise the default. Times are in seconds. `ccactors settings [--config FILE]`
prints the settings a server would run with and where each comes from, secrets masked.

| setting | default | |
|---|---|---|
"""


def render_reference() -> str:
    """The settings reference page as Markdown, from ``Settings``' fields alone (the
    environment and any settings file play no part). Not a checkpoint.

    Raises:
        ValueError: a field has no ``description``, or a section starts at a field that
            does not exist.
    """
    fields = Settings.model_fields
    if missing := set(SECTIONS) - set(fields):
        raise ValueError(f"SECTIONS names fields that do not exist: {sorted(missing)}")
    summary: list[str] = []
    body: list[str] = []
    for name, field in fields.items():
        if not field.description:
            raise ValueError(f"setting {name!r} has no description")
        if name in SECTIONS:
            body.append(f"## {SECTIONS[name]}\n")
        default = _default(field)
        first = _first_sentence(field.description)
        summary.append(f"| [`{name}`](#{name}) | {default} | {first} |")
        body.append(_entry(name, field, default))
    intro = INTRO.format(regenerate=REGENERATE)
    return intro + "\n".join(summary) + "\n\n" + "\n".join(body).rstrip() + "\n"


def _entry(name: str, field: FieldInfo, default: str) -> str:
    env = f"CCACTORS_{name.upper()}"
    lines = [
        f"### `{name}`\n",
        f"{field.description}\n",
        f"* type: {_type_of(name, field)}; default: {default}",
    ]
    sample = _sample(field)
    if sample is PydanticUndefined:
        lines.append(f"* environment: `{env}`; TOML: `{name}`")
    else:
        lines.append(
            f"* environment: `{env}={_env_value(sample)}`; TOML: `{name} = {_toml(sample)}`"
        )
    return "\n".join(lines) + "\n"


def _sample(field: FieldInfo) -> Any:
    """A value to show: the field's first example, else its default (if it has one)."""
    if field.examples:
        return field.examples[0]
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return PydanticUndefined
    value = _default_value(field)
    return PydanticUndefined if value is None else value


def _default_value(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


def _default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    value = _default_value(field)
    if value is None:
        return "unset"
    if value == []:
        return "`[]` (none)"
    if isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        return f"`{value}` ({value // (1024 * 1024)} MiB)"
    return f"`{_toml(value)}`"


def _first_sentence(text: str) -> str:
    """The description's first sentence, links kept, for the summary table."""
    match = re.match(r"(.+?(?<!e\.g)(?<!i\.e)\.)(?=\s|$)", text)
    return match.group(1) if match else text


def _type_of(name: str, field: FieldInfo) -> str:
    """The field's type in words, with its bounds: ``number of seconds, more than 0,
    or unset``."""
    annotation, optional = field.annotation, False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        optional = len(inner) < len(typing.get_args(annotation))
        annotation = inner[0] if len(inner) == 1 else typing.Union[tuple(inner)]  # noqa: UP007
    words = _type(annotation)
    if words == "number" and name.endswith("_s"):
        words = "number of seconds"
    return words + _bounds(field) + (", or unset" if optional else "")


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(arg) for arg in args if arg is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{_toml(arg)}`" for arg in args)
    if origin is list:
        return f"list of {_plural(_type(args[0]))}"
    if origin is dict:
        return f"table of {_type(args[0])} to {_type(args[1])}"
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        SecretStr: "secret string",
    }
    if annotation in names:
        return names[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    raise ValueError(f"no wording for the type {annotation!r}")


def _plural(noun: str) -> str:
    return noun if noun.endswith("s") else noun + "s"


def _bounds(field: FieldInfo) -> str:
    """Bounds and patterns from the field's constraints, e.g. ``, at least 1``."""
    parts = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f"at least {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"more than {item.gt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"at most {item.le}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"less than {item.lt}")
        elif pattern := getattr(item, "pattern", None):
            parts.append(f"matching `{pattern}`")
    return "".join(f", {part}" for part in parts)


def _toml(value: Any) -> str:
    """``value`` as a TOML value (strings as basic strings, JSON's escapes being TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, SecretStr):
        return json.dumps(value.get_secret_value())
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{json.dumps(key)} = {_toml(item)}" for key, item in value.items())
        return "{ " + pairs + " }"
    raise ValueError(f"no TOML for {value!r}")


def _env_value(value: Any) -> str:
    """``value`` as a ``CCACTORS_*`` variable's text (JSON for lists and tables), quoted
    for a shell where it needs to be."""
    if isinstance(value, list | dict):
        text = json.dumps(value, default=_json_default)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return shlex.quote(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(repr(value))
