"""The ``ccactors`` command as a user runs it: real processes, no Claude Code CLI needed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx

from app._settings import PROJECT_ROOT


def run_ccactors(*args: str, env: dict[str, str], timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_missing_cli_is_a_clear_start_up_error(tmp_path):
    """A CLI path that does not exist stops the server before it listens, saying why."""
    result = run_ccactors(
        "serve",
        "--port",
        "0",
        env={"CCACTORS_CLI_PATH": str(tmp_path / "no-claude"), "CCACTORS_STATE_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "CCACTORS_CLI_PATH" in result.stderr
    assert "no-claude" in result.stderr
    assert "serving on" not in result.stdout


def test_offline_upstream_command_serves_the_messages_api():
    """``ccactors offline-upstream --port 0`` prints its URL and answers /v1/messages."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "offline-upstream", "--port", "0"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"serving on (http://\S+)", line).group(1)
        response = httpx.post(
            f"{url}/v1/messages",
            json={"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["content"] == [{"type": "text", "text": "echo: hi"}]
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def test_serve_takes_what_exists_before_it_serves_out_of_full_collections():
    """``ccactors serve`` freezes the objects it starts with (``gc.freeze``), then counts
    from zero the objects a full collection would walk: a full collection walks only
    what serving made."""
    import gc

    from app._cli import _freeze_startup_objects

    try:
        _freeze_startup_objects()
        assert gc.get_freeze_count() > 10_000  # this process's modules, at least
        assert len(gc.get_objects(generation=2)) < gc.get_freeze_count() / 10
    finally:
        gc.unfreeze()
