"""The permission broker: Claude Code's tool-permission questions, put to a session's
listeners and answered by them (``permission_mode="ask"``)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ._fanout import FanOut
from ._types import PermissionDecision, PermissionRequest


@dataclass(eq=False)
class _Pending:
    request: PermissionRequest
    answered: trio.Event = field(default_factory=trio.Event)
    decision: PermissionDecision = field(default_factory=lambda: PermissionDecision(False))


class PermissionBroker:
    """Asks a session's listeners whether Claude Code may use a tool, and waits for one
    of them to answer.

    A question is published on the session's fan-out as a ``PermissionRequest``; any
    listener may answer it (``answer``); unanswered questions are replayed to a listener
    that joins (``pending``). With no listener, or no answer within ``timeout_s``
    seconds, the tool is denied. While a question is open the CLI is silent by design,
    so the turn's idle deadline must not count that time: ``active_since`` tells.

    Args:
        fanout: the session's listeners.
        timeout_s: seconds to wait for an answer.
        turn_id: gives the id of the running turn (for the request).
    """

    def __init__(self, fanout: FanOut, timeout_s: float, turn_id: Callable[[], str]) -> None:
        self._fanout = fanout
        self._timeout_s = timeout_s
        self._turn_id = turn_id
        self._pending: dict[str, _Pending] = {}
        self._last_activity = -math.inf  # trio time a question was last asked or closed

    async def ask(self, tool_name: str, tool_input: dict[str, Any]) -> PermissionDecision:
        """The listeners' decision on one tool use (denied if none answers in time).

        Called by the SDK's permission callback, inside the actor's client lifetime. If
        cancelled, the question is withdrawn.
        """
        if not len(self._fanout):
            return PermissionDecision(False, "no client is connected to approve tool use")
        request = PermissionRequest(
            f"perm_{uuid.uuid4().hex[:20]}", self._turn_id(), tool_name, tool_input
        )
        pending = self._pending[request.request_id] = _Pending(request)
        self._last_activity = trio.current_time()
        self._fanout.publish(request)
        try:
            with trio.move_on_after(self._timeout_s):
                await pending.answered.wait()
                return pending.decision
            return PermissionDecision(
                False, f"no answer to the permission request in {self._timeout_s}s"
            )
        finally:
            del self._pending[request.request_id]
            # The answer may land on the same instant as the turn's idle deadline.
            self._last_activity = trio.current_time()

    def answer(self, request_id: str, allow: bool, message: str = "") -> bool:
        """Answer a pending question. Returns False if there is none with that id
        (answered already, timed out, or never asked). Not a checkpoint."""
        pending = self._pending.get(request_id)
        if pending is None or pending.answered.is_set():
            return False
        pending.decision = PermissionDecision(
            allow, message or ("approved" if allow else "the user denied this tool use")
        )
        pending.answered.set()
        return True

    def pending(self) -> list[PermissionRequest]:
        """Questions not answered yet, oldest first. Not a checkpoint."""
        return [pending.request for pending in self._pending.values()]

    def active_since(self, since: float) -> bool:
        """Whether a question is open now, or one was asked or closed at or after
        ``since`` (a ``trio.current_time()`` value). Not a checkpoint."""
        return bool(self._pending) or self._last_activity >= since
