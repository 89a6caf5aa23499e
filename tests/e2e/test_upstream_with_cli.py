"""The real ``claude`` CLI runs a turn against the offline upstream."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import trio

from app.offline._upstream import serve_upstream

from .conftest import claude_cli

pytestmark = pytest.mark.e2e


async def test_real_cli_completes_a_turn_against_the_offline_upstream(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """`claude -p` through ANTHROPIC_BASE_URL gets the upstream's reply and exits 0."""
    claude = claude_cli()
    base_url = await nursery.start(serve_upstream, "127.0.0.1", 0)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "dummy",
        "CLAUDE_CONFIG_DIR": str(tmp_path / "config"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
    }
    command = [str(claude), "-p", "hi [[count]]", "--output-format", "json"]
    with trio.fail_after(60):
        result = await trio.run_process(
            command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_stdout=True
        )
    output = json.loads(result.stdout)
    assert output["is_error"] is False
    assert output["result"] == "count=1"
