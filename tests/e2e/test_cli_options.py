"""End to end: no request field reaches the options the CLI runs with."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import claude_cli

pytestmark = pytest.mark.e2e

HOSTILE = {
    "cli_path": "/bin/sh",
    "cwd": "/",
    "permission_mode": "bypassPermissions",
    "allowed_tools": ["Bash", "Write"],
    "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    "extra_args": {"dangerously-skip-permissions": None},
    "options": {"cwd": "/etc", "executable": "/bin/sh"},
    "env": {"CLAUDE_CONFIG_DIR": "/tmp/evil"},
}


def argv_and_cwd(pid: int) -> tuple[list[str], Path]:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    return argv, Path(f"/proc/{pid}/cwd").resolve()


@pytest.mark.parametrize(
    ("path", "session"), [("/v1/messages", "e2e-argv-a"), ("/v1/chat/completions", "e2e-argv-o")]
)
def test_request_fields_never_reach_the_cli_options(server, path, session):
    """Bodies carrying cli_path, cwd, permission_mode, tool lists and extra flags leave
    the live CLI's argv and working directory exactly as the server's settings say."""
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello"}],
        "metadata": {"session_id": session, **HOSTILE},
        **HOSTILE,
    }
    if path == "/v1/chat/completions":
        body.pop("tools")  # the OpenAI route refuses client tools outright (400)
    response = httpx.post(
        f"{server.url}{path}", json=body, headers={"X-Session-ID": session}, timeout=60
    )
    assert response.status_code == 200, response.text
    pid = server.session(session)["cli_pid"]
    argv, cwd = argv_and_cwd(pid)
    assert argv[0] == str(claude_cli())
    assert argv[argv.index("--tools") + 1] == "Read,Glob,Grep"
    assert "--allowedTools" not in argv  # nothing pre-approved
    assert "Bash" in argv[argv.index("--disallowedTools") + 1]
    assert argv[argv.index("--permission-mode") + 1] == "default"
    joined = " ".join(argv)
    for forbidden in (
        "bypassPermissions",
        "dangerously",
        "/bin/sh",
        "/etc",
        "--continue",
    ):
        assert forbidden not in joined
    assert cwd.parent == (server.state_dir / "workspaces").resolve()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"CLAUDE_CONFIG_DIR={server.state_dir / 'claude'}".encode() in environ


def test_claude_code_reads_only_inside_its_own_workspace(server, tmp_path):
    """By default a session's Claude Code can read a file in its workspace, but a read
    anywhere else (here: a file outside, and the state directory) is refused."""
    session = "e2e-reach"
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")

    def read(path: Path) -> str:
        prompt = f'read [[tool=Read:{{"file_path": "{path}"}}]]'
        body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": prompt}]}
        response = httpx.post(
            f"{server.url}/v1/messages", json=body, headers={"X-Session-ID": session}, timeout=60
        )
        return response.json()["content"][0]["text"]

    assert read(outside).startswith("tool error:")
    assert "not yours" not in read(outside)
    pid = server.session(session)["cli_pid"]
    workspace = Path(f"/proc/{pid}/cwd").resolve()
    (workspace / "mine.txt").write_text("my notes")
    assert "my notes" in read(workspace / "mine.txt")
    database = server.state_dir / "sessions.sqlite3"
    assert read(database).startswith("tool error:")
