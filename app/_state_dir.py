"""The state directory: private to the user ccactors runs as.

It holds the session database, every session's workspace and Claude Code's transcripts
(``CLAUDE_CONFIG_DIR``): other local users must read none of it. Directories are 0700
and files 0600; ``prepare_state_dir`` creates them so, tightens what an older version
left more open (saying so in the log), and sets the process umask so that what is
created later (by ccactors or by a CLI) is private too.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077


def prepare_state_dir(state_dir: Path) -> list[Path]:
    """Create ``state_dir`` (0700) if missing and make it and its top two levels private:
    directories 0700, files without group or other bits (the database and its journals,
    each workspace, the CLI config directory and its first level). Sets the process umask
    to 0o077, so what is created afterwards, by ccactors or by a CLI, is private too.

    Returns:
        The paths whose modes were tightened (each also logged at WARNING).

    Raises:
        OSError: the directory cannot be created or its modes changed.

    Not a checkpoint: a few syscalls on a local disk, done once at start-up.
    """
    os.umask(PRIVATE_UMASK)
    state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tightened = []
    for path in _top_levels(state_dir, depth=2):
        if _tighten(path):
            tightened.append(path)
    for path in tightened:
        log.warning("tightened %s to %s: it was readable by other users", path, _mode_text(path))
    return tightened


def _top_levels(root: Path, depth: int) -> list[Path]:
    paths = [root]
    level = [root]
    for _ in range(depth):
        level = [
            child
            for parent in level
            if parent.is_dir() and not parent.is_symlink()
            for child in sorted(parent.iterdir())
            if not child.is_symlink()
        ]
        paths.extend(level)
    return paths


def _tighten(path: Path) -> bool:
    """Remove group and other permissions from ``path``; whether anything changed."""
    mode = stat.S_IMODE(path.lstat().st_mode)
    wanted = mode & ~0o077 if path.is_file() else PRIVATE_DIR if path.is_dir() else mode
    if mode == wanted:
        return False
    path.chmod(wanted)
    return True


def _mode_text(path: Path) -> str:
    return oct(stat.S_IMODE(path.lstat().st_mode))
