"""Live slots: who may run a Claude Code process, and how a session waits for one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._types import CapacityError, PrincipalLimitError

if TYPE_CHECKING:
    from ._actor import SessionActor

log = logging.getLogger(__name__)

# Retry-After when no slot came free within the wait: a turn usually ends within this.
BUSY_RETRY_AFTER_S = 5


class LiveSlots:
    """At most ``capacity`` CLI processes at once; a session that needs one waits for it.

    The rule (so that no turn is stranded):

    * A session that needs a slot takes a free one. Failing that, it asks the best
      victim to hibernate: an idle warm-pool actor first, else the least recently used
      idle live session. Then it waits for *any* change (a slot released, a holder
      becoming idle after a turn, a holder connected), and on each change looks again
      from the start: free slot, else a victim chosen anew. A victim that received a turn
      just as it was asked to hibernate runs that turn; the waiter is woken when that
      turn ends and asks again. Progress never depends on an idle TTL.
    * The wait is bounded: after ``wait_s`` seconds with neither a free slot nor an idle
      holder the session gets ``CapacityError`` (HTTP 503) with ``Retry-After``. Waiting
      for a victim that agreed to hibernate is not counted: it ends when the victim
      releases its slot or ends the turn it received, both bounded by the turn timeouts.
    * Warm-pool actors never wait and never evict: they take a free slot or none. While
      any session waits for a slot, the warm pool is not refilled (``waiting``).
    * With a ``share``, a principal's sessions hold at most ``share`` slots. One at its
      share that needs another hibernates its *own* least recently used idle session
      first; if none of its sessions is idle it gets ``PrincipalLimitError`` (HTTP 429)
      at once. Warm actors belong to no principal.

    Args:
        capacity: CLI processes at most (sessions' and warm ones).
        wait_s: seconds a session waits for a slot before ``CapacityError``.
        share: slots one principal's sessions may hold, or ``None`` for no share.
        on_change: called (synchronously) when a slot is released or the last waiter
            stops waiting: what may refill a warm pool.
    """

    def __init__(
        self,
        capacity: int,
        *,
        wait_s: float = 0.0,
        share: int | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.share = share
        self._on_change = on_change
        self.holders: set[SessionActor] = set()
        self.waiting = 0  # sessions waiting for a slot now
        self._changed = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self.holders)

    def notify(self) -> None:
        """Something that may free a slot happened (a holder went idle, connected, or was
        adopted): wake every waiter to look again. Not a checkpoint."""
        self._changed.unpark_all()

    def release(self, actor: SessionActor) -> None:
        """``actor`` no longer runs a CLI process. Not a checkpoint."""
        self.holders.discard(actor)
        self.notify()
        self._on_change()

    def victim(
        self, exclude: SessionActor | None = None, principal: str | None = None
    ) -> SessionActor | None:
        """The holder to hibernate for a slot: an idle warm one, else the least recently
        used idle live session (with ``principal``: only that principal's sessions);
        ``None`` if no such holder is idle. Not a checkpoint."""
        idle = [
            a
            for a in self.holders
            if a is not exclude
            and a.evictable
            and (principal is None or (a.key is not None and a.key.principal == principal))
        ]
        return min(idle, key=lambda a: (a.key is not None, a.last_active_at), default=None)

    def held(self, principal: str) -> int:
        """Slots held by ``principal``'s sessions. Not a checkpoint."""
        return sum(a.key is not None and a.key.principal == principal for a in self.holders)

    def check_share(self, principal: str, exclude: SessionActor | None = None) -> None:
        """Raise now if ``principal`` holds its share and none of its sessions is idle.

        Raises:
            PrincipalLimitError: as above (HTTP 429).

        Not a checkpoint.
        """
        if (
            self.share is None
            or self.held(principal) < self.share
            or self.victim(exclude, principal) is not None
        ):
            return
        raise PrincipalLimitError(
            f"this key already has {self.share} live sessions, all busy (its share of "
            f"{self.capacity}); wait for one of its turns to end",
            retry_after_s=BUSY_RETRY_AFTER_S,
        )

    async def take_share(self, principal: str) -> None:
        """Return once ``principal`` holds less than its share, hibernating its own
        idle sessions (least recently used first) as needed.

        Raises:
            PrincipalLimitError: it holds its share and none of its sessions is idle.

        A checkpoint only when it has to wait for a session to hibernate.
        """
        while self.share is not None and self.held(principal) >= self.share:
            self.check_share(principal)
            victim = self.victim(None, principal)
            assert victim is not None  # check_share found one
            log.info("hibernating session %s: its key holds its share", victim.key)
            victim.evict()
            await self._changed.park()  # its release, or the end of a turn it just got

    def _available(self, actor: SessionActor | None) -> bool:
        return len(self.holders) < self.capacity or self.victim(actor) is not None

    async def wait_for_room(self, actor: SessionActor | None) -> None:
        """Return once a slot is free or could be had by hibernating an idle holder.
        A cheap check before a turn is queued, so a refusal can still be a status code.

        Raises:
            CapacityError: no room within ``wait_s`` seconds.

        Always a checkpoint.
        """
        await self._wait(actor, take=False)

    async def acquire(self, actor: SessionActor) -> None:
        """Take a slot for ``actor``, hibernating idle holders as needed (see the rule).

        Raises:
            CapacityError: no slot within ``wait_s`` seconds (for a warm-pool actor: no
                free slot now).
            PrincipalLimitError: the actor's principal holds its share and none of its
                sessions is idle.

        Always a checkpoint. If cancelled, no slot is held.
        """
        if actor.key is not None:
            await self.take_share(actor.key.principal)
        await self._wait(actor, take=True)

    async def _wait(self, actor: SessionActor | None, *, take: bool) -> None:
        await trio.lowlevel.checkpoint()
        warm = actor is not None and actor.key is None
        deadline = trio.current_time() + (0.0 if warm else self.wait_s)
        self.waiting += not warm
        try:
            while True:
                if actor is not None and actor in self.holders:
                    return  # it has its slot (e.g. it took one while we waited for room)
                if len(self.holders) < self.capacity:
                    if take:
                        self.holders.add(actor)  # type: ignore[arg-type]
                    return
                victim = None if warm else self.victim(actor)
                if victim is not None:
                    if not take:
                        return
                    log.info("hibernating session %s to free a live slot", victim.key)
                    victim.evict()
                    # Its release wakes us; so does the end of a turn it received just
                    # now (then it was not evicted, and we look again).
                    await self._changed.park()
                    continue
                with trio.move_on_at(deadline) as waited:
                    await self._changed.park()
                if waited.cancelled_caught:
                    break
        finally:
            self.waiting -= not warm
            if not self.waiting:
                self._on_change()
        raise CapacityError(
            f"all {self.capacity} live sessions are busy", retry_after_s=BUSY_RETRY_AFTER_S
        )
