"""End to end: a live CLI's environment and the state directory, read from the system."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from .conftest import SHORT_TIMEOUTS, start_server, stop_server

pytestmark = pytest.mark.e2e

TENANT_KEY = "sk-ccactors-e2e-tenant-key"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_no_ccactors_secret_reaches_a_cli_and_the_state_is_private(tmp_path):
    """With API keys configured and unrelated secrets in the server's environment, the
    live CLI's ``/proc/<pid>/environ`` holds no ``CCACTORS_*`` variable, no ccactors key
    and nothing off the allow-list; a state directory left world-readable is tightened
    at start-up and what the server creates in it is private."""
    state = tmp_path / "state"
    (state / "workspaces").mkdir(parents=True)
    state.chmod(0o755)
    (state / "workspaces").chmod(0o755)
    env = {
        **SHORT_TIMEOUTS,
        "CCACTORS_API_KEYS": f'["{TENANT_KEY}"]',
        "CCACTORS_WARM_POOL_SIZE": "0",
        "UNRELATED_SECRET_TOKEN": "do-not-leak",
        "LC_ALL": "C.UTF-8",
    }
    server = start_server(state, tmp_path / "server.log", env=env)
    try:
        headers = {"x-api-key": TENANT_KEY, "X-Session-ID": "env-1"}
        body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"{server.url}/v1/messages", json=body, headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        pid = server.session("env-1", api_key=TENANT_KEY)["cli_pid"]
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        environ = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        names = {name.decode() for name in environ}
        assert not {name for name in names if name.startswith("CCACTORS_")}
        assert "UNRELATED_SECRET_TOKEN" not in names
        assert TENANT_KEY.encode() not in raw
        assert {"PATH", "HOME", "LC_ALL", "CLAUDE_CONFIG_DIR", "ANTHROPIC_BASE_URL"} <= names

        assert _mode(state) == 0o700
        assert _mode(state / "workspaces") == 0o700
        workspace = Path(f"/proc/{pid}/cwd").resolve()
        assert workspace.parent == (state / "workspaces").resolve()
        assert _mode(workspace) == 0o700
        assert _mode(state / "sessions.sqlite3") == 0o600
        assert _mode(state / "claude") == 0o700
    finally:
        assert stop_server(server) == 0
    assert "tightened" in server.log()
