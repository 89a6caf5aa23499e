"""RetentionTimer: one task that forgets dormant sessions once their retention passes,
instead of a timer (a task, a cancel scope) for each of them."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._actor import SessionActor


class RetentionTimer:
    """Calls ``expire(actor)`` for each timed actor that is still ``dormant`` and still
    ``registered`` at its ``retention_deadline`` (trio time), exactly then.

    A heap of ``(deadline, tie-breaker, actor)``. An entry goes stale when its actor is
    revived (or timed again with a later deadline); stale entries are skipped when they
    come up, and dropped when they outnumber ``2 * sessions() + 64``, so they stay
    bounded however often sessions hibernate and wake.

    Args:
        expire: called for an actor past its retention. Must not checkpoint.
        registered: whether an actor still serves its session (not renamed away,
            closed or replaced meanwhile).
        sessions: how many sessions there are now.
    """

    def __init__(
        self,
        expire: Callable[[SessionActor], None],
        registered: Callable[[SessionActor], bool],
        sessions: Callable[[], int],
    ) -> None:
        self._expire = expire
        self._registered = registered
        self._sessions = sessions
        self._heap: list[tuple[float, int, SessionActor]] = []
        self._ties = itertools.count()
        self._added = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        """Entries held, stale ones included."""
        return len(self._heap)

    def time(self, actor: SessionActor) -> None:
        """Time a newly dormant actor's retention. Not a checkpoint."""
        if len(self._heap) > 2 * self._sessions() + 64:  # mostly stale entries
            self._heap = [e for e in self._heap if e[2].dormant and e[0] == e[2].retention_deadline]
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, (actor.retention_deadline, next(self._ties), actor))
        self._added.unpark_all()

    async def run(self) -> None:
        """Expire actors as their deadlines pass, until cancelled."""
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, actor = heapq.heappop(self._heap)
                if actor.dormant and actor.retention_deadline <= now and self._registered(actor):
                    self._expire(actor)
            with trio.move_on_at(self._heap[0][0] if self._heap else math.inf):
                await self._added.park()
