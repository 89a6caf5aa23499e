"""Logging set-up: plain text or one JSON object per line (``--log-format json``).

Every record carries the request id (from the HTTP layer), and the session and turn ids
(set by the actor running the turn) when there are any.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from actors._logcontext import session_id_var, turn_id_var

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ccactors_request_id", default=None
)

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _ContextFilter(logging.Filter):
    """Adds ``request_id``, ``session_id`` and ``turn_id`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.session_id = getattr(record, "session_id", None) or session_id_var.get()
        record.turn_id = getattr(record, "turn_id", None) or turn_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, the
    context ids, any ``extra=`` fields, and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD and value is not None
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: Literal["text", "json"]) -> None:
    """Send logs to stderr as text or JSON lines, tagged with the context ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
