"""Text that Claude Code adds to a user's message and that is not the user's words."""

from __future__ import annotations

import re

SYSTEM_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
INTERRUPT_MARKER = re.compile(r"\[Request interrupted by user[^\]]*\]")
CLIENT_ADDITIONS = re.compile(f"{SYSTEM_REMINDER.pattern}|{INTERRUPT_MARKER.pattern}", re.DOTALL)


def without_client_additions(text: str) -> str:
    """``text`` without ``<system-reminder>`` sections and ``[Request interrupted by
    user]`` markers, stripped. Not a checkpoint."""
    return CLIENT_ADDITIONS.sub("", text).strip()
