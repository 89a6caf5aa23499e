"""The warm pool: connected actors with no session yet, adopted by new sessions so their
first reply does not wait for a CLI to start."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from ._slots import LiveSlots

if TYPE_CHECKING:
    from ._actor import SessionActor

log = logging.getLogger(__name__)

# Seconds between attempts when a warm CLI cannot start: do not spin on a broken CLI.
RETRY_AFTER_FAILED_START_S = 1.0
# After an adoption, the CLI that replaces the adopted one starts once the adopting
# session's first turn is over, or this many seconds after the adoption if it is not:
# a CLI's start takes about half a second of CPU, and on 2 cores starting it at once
# made that very turn (the reply the pool is there to speed up) ~100 ms slower.
REFILL_HOLD_OFF_S = 2.0


class WarmPool:
    """Keeps ``size`` connected, unassigned actors ready, using only free live slots.

    A warm actor holds a live slot like any other; it never waits for one and never
    evicts. While a session waits for a slot (``slots.waiting``), or sessions are being
    started, the pool is not refilled; an idle warm actor is the first victim when a
    session needs its slot (``LiveSlots``). Nor is it refilled while a session that
    adopted a warm actor is on its first turn, for at most ``REFILL_HOLD_OFF_S`` after
    the adoption.

    ``model`` is the model the latest adopting session asked for (``None``: none named
    yet); the supervisor has warm actors started from then on switch their CLI to it
    before they are offered.

    Args:
        size: actors to keep ready.
        slots: the live slots they take.
        start_actor: starts one unassigned actor in the supervisor's nursery and returns
            it once its client is connected (raises if the CLI could not start).
    """

    def __init__(
        self,
        size: int,
        slots: LiveSlots,
        start_actor: Callable[[], Awaitable[SessionActor]],
    ) -> None:
        self.size = size
        self._slots = slots
        self._start_actor = start_actor
        self._ready: list[SessionActor] = []
        self._starting = 0
        self._adopted: list[tuple[SessionActor, float]] = []  # (actor, hold off until)
        self.model: str | None = None
        self._changed = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def pids(self) -> list[int]:
        """The CLI pids of the ready actors. Not a checkpoint."""
        return [a.cli_pid for a in self._ready if a.cli_pid is not None]

    def take(self, model: str | None = None) -> SessionActor | None:
        """The oldest ready actor, now no longer the pool's; ``None`` if none is ready
        (one being evicted for another session's slot is not). The caller adopts it at
        once, for a turn that asks for ``model`` (``None``: names none), which becomes
        the pool's ``model``. Not a checkpoint."""
        actor = next((a for a in self._ready if a.evictable), None)
        if actor is not None:
            self._ready.remove(actor)
            self._adopted.append((actor, trio.current_time() + REFILL_HOLD_OFF_S))
            self.model = model or self.model
            self.notify()
        return actor

    def _held_off_until(self) -> float | None:
        """Until when the refill waits for an adopting session's first turn to end;
        ``None`` if no such turn holds it off. Not a checkpoint."""
        now = trio.current_time()
        self._adopted = [(a, t) for a, t in self._adopted if t > now and not a.first_turn_over]
        return min((t for _, t in self._adopted), default=None)

    def discard(self, actor: SessionActor) -> None:
        """Forget ``actor`` if it is in the pool (it retired). Not a checkpoint."""
        if actor in self._ready:
            self._ready.remove(actor)
        self.notify()

    def notify(self) -> None:
        """Something the pool's size depends on changed: look again. Not a checkpoint."""
        self._changed.unpark_all()

    async def keep_warm(self, nursery: trio.Nursery, hold_off: Callable[[], bool]) -> None:
        """Refill the pool in ``nursery`` whenever it is short, a slot is free and
        ``hold_off()`` is false (the supervisor holds off while it is closing or sessions
        are being started: they may need every free slot, and a warm CLI started then
        would only be evicted again, its start-up CPU wasted), nor while an adopting
        session is on its first turn (``REFILL_HOLD_OFF_S``). Runs until cancelled."""
        while True:
            held_off_until = self._held_off_until()
            while (
                held_off_until is None
                and not hold_off()
                and len(self._ready) + self._starting < self.size
                and len(self._slots) + self._starting < self._slots.capacity
                and not self._slots.waiting  # a waiting session needs the slot more
            ):
                self._starting += 1
                nursery.start_soon(self._fill_one)
            with trio.move_on_at(math.inf if held_off_until is None else held_off_until):
                await self._changed.park()

    async def _fill_one(self) -> None:
        try:
            actor = await self._start_actor()
        except Exception as exc:
            log.warning("a warm Claude Code could not start: %r", exc)
            await trio.sleep(RETRY_AFTER_FAILED_START_S)
        else:
            if actor.key is None and actor.state != "closing":
                self._ready.append(actor)
        finally:
            self._starting -= 1
            self.notify()
