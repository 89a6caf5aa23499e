"""Settings from a TOML file: precedence, unknown keys, and ``ccactors settings``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app._cli import cli
from app._settings_file import SettingsFileError, load_settings, setting_sources

FILE = """\
port = 9000
max_live_sessions = 3
warm_pool_size = 1
api_keys = ["file-secret-key"]
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    for name in ("CCACTORS_PORT", "CCACTORS_MAX_LIVE_SESSIONS", "CCACTORS_WARM_POOL_SIZE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ccactors.toml"
    path.write_text(FILE)
    return path


def test_flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults(
    config, monkeypatch
):
    monkeypatch.setenv("CCACTORS_MAX_LIVE_SESSIONS", "5")
    settings = load_settings(config, port=9100, host=None)
    assert settings.port == 9100  # flag over file
    assert settings.max_live_sessions == 5  # environment over file
    assert settings.warm_pool_size == 1  # file over default
    assert settings.host == "127.0.0.1"  # default (a None flag is no flag)
    sources = {name: source for name, _, source in setting_sources(settings, config, {"port": 1})}
    assert sources["port"] == "command line"
    assert sources["max_live_sessions"] == "environment"
    assert sources["warm_pool_size"] == "file"
    assert sources["host"] == "default"


def test_an_unknown_key_is_an_error_naming_it_and_the_closest_setting(tmp_path):
    path = tmp_path / "ccactors.toml"
    path.write_text("max_live_sesions = 3\n")
    with pytest.raises(SettingsFileError, match=r"'max_live_sesions'.*'max_live_sessions'"):
        load_settings(path)


def test_invalid_toml_and_a_missing_file_are_errors(tmp_path):
    path = tmp_path / "ccactors.toml"
    path.write_text("port = \n")
    with pytest.raises(SettingsFileError, match="not valid TOML"):
        load_settings(path)
    with pytest.raises(SettingsFileError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")


def test_settings_command_shows_sources_and_masks_secrets(config, monkeypatch):
    monkeypatch.setenv("CCACTORS_MAX_LIVE_SESSIONS", "5")
    result = CliRunner().invoke(cli, ["settings", "--config", str(config)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert rows["port"][1:] == ["9000", "file"]
    assert rows["max_live_sessions"][1:] == ["5", "environment"]
    assert rows["api_keys"][1:] == ["[**********]", "file"]
    assert "file-secret-key" not in result.output


def test_serve_refuses_to_start_with_a_bad_settings_file(tmp_path):
    path = tmp_path / "ccactors.toml"
    path.write_text('port = "eighty"\n')
    result = CliRunner().invoke(cli, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "invalid settings" in result.output and "port" in result.output
    path.write_text("bogus = 1\n")
    result = CliRunner().invoke(cli, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "unknown setting 'bogus'" in result.output


def test_settings_command_shows_lists_as_written(tmp_path, monkeypatch):
    """A list value such as ``[ccactors.example.com]`` is shown, not taken for markup."""
    monkeypatch.delenv("CCACTORS_ALLOWED_HOSTS", raising=False)
    path = tmp_path / "ccactors.toml"
    path.write_text('allowed_hosts = ["ccactors.example.com"]\n')
    result = CliRunner().invoke(cli, ["settings", "--config", str(path)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert rows["allowed_hosts"][1:] == ["[ccactors.example.com]", "file"]


def test_the_database_url_is_masked_and_a_wrong_one_refused_without_its_password(monkeypatch):
    """``database_url`` may hold a password: ``ccactors settings`` masks it, and a URL
    that is not PostgreSQL's is an error naming the setting but not the value."""
    monkeypatch.setenv("CCACTORS_DATABASE_URL", "postgresql://app:hunter2@db.example/cc")
    result = CliRunner().invoke(cli, ["settings"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert rows["database_url"][1:] == ["**********", "environment"]
    assert "hunter2" not in result.output
    monkeypatch.setenv("CCACTORS_DATABASE_URL", "mysql://app:hunter2@db.example/cc")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "database_url" in result.output and "postgresql://" in result.output
    assert "hunter2" not in result.output
