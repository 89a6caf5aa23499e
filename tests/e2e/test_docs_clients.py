"""docs/how-to/claude-code.md and docs/how-to/open-webui.md, every block run against
one offline server started as the Claude Code guide starts it.

What the test changes: the server listens on a free port (``CCACTORS_PORT=0``, and the
blocks get its real URL for ``http://127.0.0.1:8765``) with a temporary state directory
and no warm pool; ``claude`` is the CLI bundled with the locked SDK, with its own
configuration in a temporary ``CLAUDE_CONFIG_DIR``. Open WebUI itself is not installed:
``frontend.py`` makes the requests it makes.
"""

from __future__ import annotations

import pytest

from app._settings import PROJECT_ROOT

from ..docs_blocks import blocks
from .conftest import claude_cli
from .docs_runner import Runner, reader_env

pytestmark = pytest.mark.e2e

HOW_TO = PROJECT_ROOT / "docs" / "how-to"


def run_guide(runner: Runner, page) -> None:
    """Run every block of ``page`` in order; ``skip`` blocks are left out."""
    output = ""
    for block in blocks(page):
        if block.kind == "serve":
            output = runner.serve(block).output
        elif block.kind == "run":
            output = runner.run(block)
        elif block.kind == "file":
            runner.write(block)
        elif block.kind == "output":
            runner.expect(output, block)
        elif block.kind != "skip":
            pytest.fail(f"{block.where()}: no use for {block.kind} here")


def test_claude_code_and_chat_front_end_guides(tmp_path):
    """Claude Code pointed at ccactors gets its answers from one session, which its
    --resume continues; a front end resending the whole chat without a session id stays
    in one session (count=1, 2, 3)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(claude_cli())
    env = reader_env(
        CCACTORS_PORT="0",
        CCACTORS_STATE_DIR=str(tmp_path / "state"),
        CCACTORS_WARM_POOL_SIZE="0",
        CLAUDE_CONFIG_DIR=str(tmp_path / "client-config"),
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
    )
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    runner = Runner(cwd=tmp_path, env=env)
    try:
        run_guide(runner, HOW_TO / "claude-code.md")
        assert "http://127.0.0.1:8765" in runner.substitutions, "the guide started a server"
        run_guide(runner, HOW_TO / "open-webui.md")
    finally:
        runner.stop_all()
