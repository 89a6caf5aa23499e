"""docs/tutorial.md, followed as a newcomer would: every block run in order, every
output checked against what the page says.

The install step is the page's own, with one change: ``pip install`` becomes ``uv pip
install`` (the same install from the same index, through uv's cache: seconds instead of
a minute of CPU; Python then compiles each module on first import, where pip compiles
them all while installing). The server runs with ``CCACTORS_PORT=0`` and a
temporary ``CCACTORS_STATE_DIR``; the blocks after it have ``http://127.0.0.1:8765``
replaced by the server's real URL. Nothing else differs from the page.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import psutil
import pytest

from app._settings import PROJECT_ROOT

from ..docs_blocks import blocks
from .conftest import claude_cli, wait_until
from .docs_runner import Runner, reader_env

pytestmark = pytest.mark.e2e

TUTORIAL = PROJECT_ROOT / "docs" / "tutorial.md"


def without_project_venv(path: str) -> str:
    """``PATH`` without this project's own virtual environment: the tutorial must work
    with only what it installs."""
    own = str(Path(sys.prefix) / "bin")
    return os.pathsep.join(entry for entry in path.split(os.pathsep) if entry != own)


def test_tutorial_from_install_to_a_shared_session(tmp_path):
    """The tutorial's install gives a working ``ccactors``; its server streams a
    conversation to the official anthropic client that remembers earlier turns; a
    WebSocket chat joins that same session; the session reports four turns; Ctrl-C stops
    the server with no CLI left behind."""
    claude_cli()
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (the install step uses it)")
    (tmp_path / "ccactors").symlink_to(PROJECT_ROOT)
    venv = tmp_path / "ccactors-venv"
    runner = Runner(
        cwd=tmp_path,
        env=reader_env(
            PATH=without_project_venv(os.environ["PATH"]),
            CCACTORS_PORT="0",
            CCACTORS_STATE_DIR=str(tmp_path / "state"),
            UV_NO_PROGRESS="1",
        ),
        substitutions={"pip install": f"{uv} pip install"},
    )
    steps = [b for b in blocks(TUTORIAL) if b.kind != "skip"]
    server = None
    try:
        output = ""
        for index, block in enumerate(steps):
            if block.kind == "run":
                output = runner.run(block, timeout=300)
                if "venv" in block.text and "activate" in block.text and venv.exists():
                    # The reader's terminal stays activated: so do the next blocks.
                    runner.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{runner.env['PATH']}"
                    runner.env["VIRTUAL_ENV"] = str(venv)
            elif block.kind == "serve":
                server = runner.serve(block)
                output = server.output
            elif block.kind == "chat":
                output = runner.chat(block, steps[index + 1])
            elif block.kind == "file":
                runner.write(block)
            elif block.kind == "output":
                runner.expect(output, block)
            else:
                pytest.fail(f"{block.where()}: the tutorial test has no use for {block.kind}")
        assert server is not None, "the tutorial starts no server"
        assert shutil.which("ccactors", path=runner.env["PATH"]) == str(venv / "bin" / "ccactors")
        clis = [
            child.pid
            for child in psutil.Process(server.process.pid).children(recursive=True)
            if "claude" in " ".join(child.cmdline()[:1])
        ]
        assert len(clis) >= 2, "a live session and a warm CLI, at least"
        # Step 5: Ctrl-C.
        assert server.stop() == 0, server.log_path.read_text()
        wait_until(lambda: not any(psutil.pid_exists(pid) for pid in clis), 10, "every CLI to exit")
    finally:
        runner.stop_all()
