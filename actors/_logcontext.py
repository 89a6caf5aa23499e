"""Context variables that tag log records with the session and turn being worked on.

An actor sets them in its own task while it runs a turn (each Trio task has its own
context), so any log line written meanwhile, by ccactors or a library, can carry them.
"""

from __future__ import annotations

import contextvars

session_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ccactors_session_id", default=None
)
turn_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ccactors_turn_id", default=None
)
