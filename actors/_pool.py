"""The warm pool: connected actors with no session yet, adopted by new sessions so their
first reply does not wait for a CLI to start."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from ._slots import LiveSlots

if TYPE_CHECKING:
    from ._actor import SessionActor

log = logging.getLogger(__name__)

# Seconds between attempts when a warm CLI cannot start: do not spin on a broken CLI.
RETRY_AFTER_FAILED_START_S = 1.0


class WarmPool:
    """Keeps ``size`` connected, unassigned actors ready, using only free live slots.

    A warm actor holds a live slot like any other; it never waits for one and never
    evicts. While a session waits for a slot (``slots.waiting``), or sessions are being
    started, the pool is not refilled; an idle warm actor is the first victim when a
    session needs its slot (``LiveSlots``).

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
        self._changed = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def pids(self) -> list[int]:
        """The CLI pids of the ready actors. Not a checkpoint."""
        return [a.cli_pid for a in self._ready if a.cli_pid is not None]

    def take(self) -> SessionActor | None:
        """The oldest ready actor, now no longer the pool's; ``None`` if none is ready
        (one being evicted for another session's slot is not). The caller adopts it at
        once. Not a checkpoint."""
        actor = next((a for a in self._ready if a.evictable), None)
        if actor is not None:
            self._ready.remove(actor)
            self.notify()
        return actor

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
        would only be evicted again, its start-up CPU wasted). Runs until cancelled."""
        while True:
            while (
                not hold_off()
                and len(self._ready) + self._starting < self.size
                and len(self._slots) + self._starting < self._slots.capacity
                and not self._slots.waiting  # a waiting session needs the slot more
            ):
                self._starting += 1
                nursery.start_soon(self._fill_one)
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
