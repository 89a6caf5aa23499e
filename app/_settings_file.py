"""Settings from a TOML file, and where each effective setting came from.

``ccactors serve --config ccactors.toml`` reads the file's top-level keys, named as the
``Settings`` fields (``max_live_sessions = 8``, ``api_keys = ["..."]``). Precedence,
highest first: command-line flags, ``CCACTORS_*`` environment variables, the file, the
defaults (pydantic-settings' ``TomlConfigSettingsSource`` under the environment source).
A key the file should not have is a start-up error naming it, never silently ignored.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from ._settings import Settings

Source = Literal["command line", "environment", "file", "default"]


class SettingsFileError(ValueError):
    """The settings file is missing, not TOML, or has a key that is not a setting."""


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings in ``path`` as a dict of field name to raw value.

    Raises:
        SettingsFileError: the file cannot be read, is not valid TOML (the message has
            the line), or has a key that is not a ``Settings`` field (the message names
            it and the closest setting).
    """
    try:
        with path.open("rb") as file:
            values = tomllib.load(file)
    except OSError as exc:
        raise SettingsFileError(f"cannot read settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(f"settings file {path} is not valid TOML: {exc}") from None
    fields = Settings.model_fields
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsFileError(f"unknown setting {key!r} in {path}{hint}")
    return values


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """The effective settings: ``overrides`` (command-line flags; ``None`` values are
    left out), then the environment, then ``config_file``, then the defaults.

    Raises:
        SettingsFileError: as ``read_settings_file``.
        pydantic.ValidationError: a value (from any source) is not valid.
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    if config_file is None:
        return Settings(**given)
    read_settings_file(config_file)  # unknown keys are errors, not ignored
    from_file = type(
        "Settings",
        (Settings,),
        {"model_config": {**Settings.model_config, "toml_file": config_file}},
    )
    return from_file(**given)


def setting_sources(
    settings: Settings, config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> list[tuple[str, str, Source]]:
    """Each setting as ``(name, shown value, source)``, secrets masked as ``**********``.

    ``source`` is where the effective value came from, by the precedence of
    ``load_settings``. Not a checkpoint.
    """
    given = {name for name, value in (overrides or {}).items() if value is not None}
    in_file = read_settings_file(config_file) if config_file is not None else {}
    environment = {name.upper() for name in os.environ}
    prefix = Settings.model_config.get("env_prefix", "")
    rows: list[tuple[str, str, Source]] = []
    for name in Settings.model_fields:
        source: Source
        if name in given:
            source = "command line"
        elif f"{prefix}{name}".upper() in environment:
            source = "environment"
        elif name in in_file:
            source = "file"
        else:
            source = "default"
        rows.append((name, _shown(getattr(settings, name)), source))
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return "unset" if value is None else str(value)
