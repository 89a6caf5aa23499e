"""The CLI's environment is an allow-list; the state directory is private."""

from __future__ import annotations

import logging
import os
import stat

from app._state_dir import prepare_state_dir
from app.security._environment import cli_environment, confine_environment, is_allowed


def test_only_allow_listed_variables_reach_a_cli():
    """What Claude Code needs passes; ccactors' settings and anything unknown do not."""
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LC_ALL": "C.UTF-8",
        "HTTPS_PROXY": "http://proxy:3128",
        "ANTHROPIC_API_KEY": "sk-ant-upstream",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "AWS_REGION": "eu-west-1",
        "CCACTORS_API_KEYS": '["sk-tenant"]',
        "CCACTORS_STATE_DIR": "/var/lib/ccactors",
        "GITHUB_TOKEN": "ghp_x",
        "DATABASE_URL": "postgresql://u:p@db/x",
    }
    assert cli_environment(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LC_ALL": "C.UTF-8",
        "HTTPS_PROXY": "http://proxy:3128",
        "ANTHROPIC_API_KEY": "sk-ant-upstream",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "AWS_REGION": "eu-west-1",
    }
    assert not is_allowed("CCACTORS_ANTHROPIC_X")


def test_a_ccactors_key_never_reaches_a_cli_under_any_name():
    """A variable whose value is one of ccactors' own API keys is dropped even when its
    name is allowed (an operator who reused a tenant key as the upstream key)."""
    environ = {"ANTHROPIC_API_KEY": "sk-tenant", "ANTHROPIC_BASE_URL": "http://up"}
    assert cli_environment(environ, ["sk-tenant", ""]) == {"ANTHROPIC_BASE_URL": "http://up"}


def test_confining_removes_the_rest_and_names_it(caplog):
    """``confine_environment`` leaves exactly the allow-listed part and logs the names
    it removed, never their values."""
    environ = {"PATH": "/bin", "CCACTORS_API_KEYS": "secret-value", "OTHER": "x"}
    with caplog.at_level(logging.INFO, logger="app.security._environment"):
        removed = confine_environment(["secret-value"], environ)
    assert environ == {"PATH": "/bin"}
    assert removed == ["CCACTORS_API_KEYS", "OTHER"]
    assert "CCACTORS_API_KEYS" in caplog.text
    assert "secret-value" not in caplog.text


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_state_directory_is_private(tmp_path):
    """A state directory ccactors creates is 0700, and the umask keeps what is created
    in it later private."""
    old = os.umask(0o022)
    try:
        state = tmp_path / "new" / "state"
        assert prepare_state_dir(state) == []
        assert _mode(state) == 0o700
        (state / "workspaces").mkdir()
        (state / "sessions.sqlite3").write_text("")
        assert _mode(state / "workspaces") == 0o700
        assert _mode(state / "sessions.sqlite3") == 0o600
    finally:
        os.umask(old)


def test_an_open_state_directory_is_tightened_with_a_log_line(tmp_path, caplog):
    """Directories and files an older version left readable by others are tightened at
    start-up (two levels deep), and each change is logged."""
    old = os.umask(0o022)
    try:
        state = tmp_path / "state"
        (state / "workspaces" / "s-1").mkdir(parents=True, mode=0o755)
        state.chmod(0o755)
        (state / "workspaces").chmod(0o755)
        (state / "sessions.sqlite3").write_text("")
        (state / "sessions.sqlite3").chmod(0o644)
        with caplog.at_level(logging.WARNING, logger="app._state_dir"):
            tightened = prepare_state_dir(state)
        assert set(tightened) == {
            state,
            state / "workspaces",
            state / "workspaces" / "s-1",
            state / "sessions.sqlite3",
        }
        assert _mode(state) == _mode(state / "workspaces") == 0o700
        assert _mode(state / "workspaces" / "s-1") == 0o700
        assert _mode(state / "sessions.sqlite3") == 0o600
        assert caplog.text.count("tightened") == 4
    finally:
        os.umask(old)
