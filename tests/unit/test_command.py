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
    """``ccactors serve`` freezes the objects it starts with (``gc.freeze``): a full
    collection then walks only what serving made, and comes once that has grown by a
    quarter, not once a quarter as many objects as the whole process holds have
    survived younger collections."""
    import gc

    from app._cli import _freeze_startup_objects

    full: list[dict] = []

    def count(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(info)

    try:
        _freeze_startup_objects()
        assert gc.get_freeze_count() > 10_000  # this process's modules, at least
        gc.callbacks.append(count)
        kept = []
        for n in range(200_000):
            cycle: list = []
            cycle.append(cycle)  # garbage that only a collection frees
            if n % 100 == 0:
                kept.append([n])  # and a few objects that stay
        assert full, "no full collection after 200,000 cycles"
    finally:
        if count in gc.callbacks:
            gc.callbacks.remove(count)
        gc.unfreeze()
        gc.collect()  # the collector's counts as before, for the tests that follow
