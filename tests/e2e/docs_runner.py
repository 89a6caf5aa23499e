"""Runs the marked blocks of a guide (``tests/docs_blocks.py``) as a reader would.

Each block runs in a fresh ``bash`` in one working directory, with the environment the
reader's terminal would have; the test's own adjustments are explicit ``substitutions``
(e.g. the server's real URL for ``http://127.0.0.1:8765``) and ``env`` entries.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..docs_blocks import Block, output_matches, typed_lines

URL = re.compile(r"serving on (http://\S+)")


@dataclass
class Background:
    """A ``serve`` block's process, with what it printed on standard output."""

    process: subprocess.Popen[str]
    output: str
    log_path: Path

    def stop(self, timeout: float = 30) -> int:
        """SIGINT (the reader's Ctrl-C), then wait; kill after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()


@dataclass
class Runner:
    """Runs blocks in ``cwd`` with ``env``, applying ``substitutions`` to their text."""

    cwd: Path
    env: dict[str, str]
    substitutions: dict[str, str] = field(default_factory=dict)
    background: list[Background] = field(default_factory=list)

    def text(self, block: Block) -> str:
        """The block's text with the substitutions made."""
        return self.substitute(block.text)

    def substitute(self, text: str) -> str:
        for old, new in self.substitutions.items():
            text = text.replace(old, new)
        return text

    def run(self, block: Block, stdin: str = "", timeout: float = 120) -> str:
        """Run a ``run`` or ``chat`` block; its standard output and error, together.
        Fails the test if it exits non-zero or runs over ``timeout`` seconds."""
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.text(block)],
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{block.where()} failed ({result.returncode}):\n{output}"
        return output

    def write(self, block: Block) -> Path:
        """Save a ``file NAME`` block as NAME."""
        path = self.cwd / self.substitute(block.argument)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text(block))
        return path

    def serve(self, block: Block, timeout: float = 60) -> Background:
        """Start a ``serve`` block; return once it prints ``serving on URL``, and map
        ``http://127.0.0.1:8765`` (and its ``host:port``) to the real URL from then on."""
        log_path = self.cwd / f"serve-{block.line}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", "exec " + self.text(block).strip()],
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        running = Background(process, "", log_path)
        self.background.append(running)
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while selector.select(timeout=max(0, deadline - time.monotonic())):
                line = process.stdout.readline()
                if not line:
                    break
                running.output += line
                if match := URL.search(line):
                    url = match.group(1)
                    self.substitutions["http://127.0.0.1:8765"] = url
                    self.substitutions["127.0.0.1:8765"] = url.removeprefix("http://")
                    return running
        pytest.fail(f"{block.where()} did not start:\n{log_path.read_text()}")

    def expect(self, output: str, expected: Block) -> None:
        """Assert that ``output`` shows what the ``output`` block says."""
        wanted = self.text(expected)
        assert output_matches(wanted, output), (
            f"{expected.where()}: the output does not show\n{wanted}\nit was:\n{output}"
        )

    def chat(self, block: Block, expected: Block) -> str:
        """Run a ``chat`` block, typing what its output block shows after ``you> ``; the
        output as a terminal shows it (each typed line after its prompt)."""
        typed = typed_lines(self.text(expected))
        output = self.run(block, stdin=typed)
        for line in typed.splitlines():
            output = output.replace("you> ", "you\0 " + line + "\n", 1)
        return output.replace("you\0 ", "you> ")

    def stop_all(self) -> None:
        for running in self.background:
            running.stop()


def reader_env(**extra: str) -> dict[str, str]:
    """The test's environment without what a reader's terminal does not have
    (``CCACTORS_*``, ``ANTHROPIC_*``, an active virtual environment,
    ``PYTHONDONTWRITEBYTECODE``), plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CCACTORS_", "ANTHROPIC_", "VIRTUAL_ENV"))
        and name != "PYTHONDONTWRITEBYTECODE"
    }
    return {**env, **extra}
