"""The settings reference page is generated from ``Settings`` and kept up to date."""

from __future__ import annotations

import tomllib

from typer.testing import CliRunner

from app._cli import cli
from app._settings import PROJECT_ROOT, Settings
from app._settings_reference import REFERENCE_PATH, REGENERATE, render_reference


def test_the_committed_settings_reference_is_the_generated_one():
    """docs/reference/settings.md is what the Settings model says now: a setting added or
    re-described without regenerating the page fails here, naming the command."""
    committed = (PROJECT_ROOT / REFERENCE_PATH).read_text()
    assert committed == render_reference(), f"{REFERENCE_PATH} is stale: run `{REGENERATE}`"


def test_every_setting_is_on_the_page_with_its_variable_key_and_description():
    page = render_reference()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} needs a description (it is the documentation)"
        assert f"### `{name}`\n\n{field.description}\n" in page
        assert f"`CCACTORS_{name.upper()}" in page


def test_the_toml_lines_the_page_shows_are_valid_settings(tmp_path, monkeypatch):
    """Every ``TOML: `name = value``` example parses and validates as a settings file."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"CCACTORS_{name.upper()}", raising=False)
    lines = [
        line.split("TOML: `", 1)[1].rstrip("`")
        for line in render_reference().splitlines()
        if line.startswith("* environment:") and " = " in line
    ]
    values = tomllib.loads("\n".join(lines))
    assert len(values) == len(lines)
    for file in ("api_key_hashes_file", "admin_api_key_hashes_file", "cli_path"):
        values.pop(file)  # examples of paths that need not exist here
    values["state_dir"] = str(tmp_path)
    Settings(**values)


def test_settings_reference_command_prints_the_page():
    result = CliRunner().invoke(cli, ["settings", "--reference"])
    assert result.exit_code == 0, result.output
    assert result.output == render_reference()
