"""The embedding example in docs/ runs as documented."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app._settings import PROJECT_ROOT

from .conftest import claude_cli

pytestmark = pytest.mark.e2e


def test_embedding_example_runs_two_sessions_with_memory():
    """docs/examples/embedding.py holds two concurrent sessions through the real CLI and
    Alice's session remembers her first turn."""
    claude_cli()
    result = subprocess.run(
        [sys.executable, "docs/examples/embedding.py"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert """[alice] "Hi, I'm Alice [[count]]" -> 'count=1' (2 output tokens)""" in lines
    assert """[bob] "Hi, I'm Bob [[count]]" -> 'count=1' (2 output tokens)""" in lines
    assert lines[-1] == "[alice] 'Still me [[count]]' -> 'count=2' (2 output tokens)"
