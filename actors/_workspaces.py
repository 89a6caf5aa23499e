"""Session workspaces: one private working directory per session, named so that no
session id can steer it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import trio

from ._types import SessionKey

# Seconds a retired actor's workspace removal may hold up its supervisor.
REMOVE_TIMEOUT_S = 10.0

# Where a session's own addition to Claude Code's system prompt (``Turn.system``) lives.
SYSTEM_PROMPT_FILE = ".ccactors-system-prompt.md"


def workspace_name(key: SessionKey) -> str:
    """A directory name for a session's workspace that no session id can steer.

    Derived by hashing (principal, session id): never the raw id. Not a checkpoint.
    """
    digest = hashlib.sha256(f"{key.principal}\0{key.session_id}".encode()).hexdigest()
    return f"s-{digest[:32]}"


def make_workspace(path: Path) -> None:
    """Create a workspace (0700). Not a checkpoint: one mkdir on a local disk is cheaper
    than a thread hop, and it keeps the spawn path free of threads (which would make
    virtual-clock tests inexact)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def set_system_prompt(workspace: Path, text: str | None) -> None:
    """Write ``text`` as the session's addition to Claude Code's system prompt (0600,
    never through a symlink), or remove any such file when ``text`` is None (a stale one
    must not reach a new session). Not a checkpoint, like ``make_workspace``.

    Raises:
        OSError: the file could not be written.
    """
    path = workspace / SYSTEM_PROMPT_FILE
    if text is None:
        path.unlink(missing_ok=True)
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, 0o600), "w", encoding="utf-8") as file:
        file.write(text)


def system_prompt_file(workspace: Path) -> Path | None:
    """The session's system prompt addition, if it has one. Not a checkpoint."""
    path = workspace / SYSTEM_PROMPT_FILE
    return path if path.is_file() else None


async def remove_workspace(path: Path) -> None:
    """Remove a workspace: an empty one (the usual case) at once, a full one in a worker
    thread so a large tree does not stall the event loop. Shielded (a shutdown still
    cleans up) but bounded by ``REMOVE_TIMEOUT_S``: a huge or stuck tree is left to its
    worker thread."""
    with trio.move_on_after(REMOVE_TIMEOUT_S, shield=True):
        try:
            _remove_empty(path)
        except FileNotFoundError:
            return
        except OSError:
            await trio.to_thread.run_sync(shutil.rmtree, path, True, abandon_on_cancel=True)
        else:
            await trio.lowlevel.checkpoint()


def _remove_empty(path: Path) -> None:
    # One rmdir on a local disk, like make_workspace: no thread hop for the usual case.
    path.rmdir()
