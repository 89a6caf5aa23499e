"""Which node drives which session: leases in the shared database, held and renewed by
each node, and handed over on request.

A node drives a session only while it holds the session's lease (``app.sessions``'
lease table: owner node, expiry by the database's clock, and a fencing token that grows
with every new owner). This module is the node's side of it:

* ``claim`` (before every turn, through the supervisor's ``SessionOwnership`` hook): a
  lease this node holds and renewed recently lets the turn through without a database
  round trip; otherwise the node acquires it. If another node holds it, that node is
  asked (``HandOffRequests``) to hand it over: it lets its running and queued turns
  finish, closes the session's CLI, and releases the lease; this node then acquires it
  and resumes the conversation from the shared store. A node that died never answers:
  its lease runs out after ``lease_ttl_s`` and this node takes it then. ``claim`` waits
  up to ``claim_timeout_s`` in all before refusing the turn (HTTP 503, ``Retry-After``).
* ``renew_forever``: every third of ``lease_ttl_s``, extends every lease this node
  holds. A lease not extended (the node was paused past its expiry and another node
  took the session) is given up at once: its actor is stopped, and the fencing token
  keeps whatever it still tries to write out of the database.
* ``fence``: the token of the lease this node holds for a session (``None`` if none),
  for the store's and the transcripts' fenced writes.
* ``release_all``: at shutdown, after every CLI is closed, every lease goes back so
  that other nodes take the sessions over at their next turn, without waiting for
  expiry.

The design (hand-off rather than forwarding requests to the owner) and its costs are
in ``docs/explanation/cluster.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from actors import CapacityError, Observer, SessionKey, Supervisor

from ._leases import Lease, LeaseHeld

log = logging.getLogger(__name__)

# A lease counts as held locally for this share of its time to live after it was last
# acquired or renewed (measured from before the database was asked): the rest is margin
# for the clock drift between this node and the database.
LOCAL_SHARE = 0.8


class LeaseTable(Protocol):
    """The database's leases (``app.sessions._leases``)."""

    async def acquire(self, key: SessionKey, node: str, ttl_s: float) -> Lease: ...
    async def renew(self, node: str, ttl_s: float) -> dict[SessionKey, int]: ...
    async def cluster(self) -> list[tuple[str, float, int]]: ...
    async def holders(self) -> dict[SessionKey, str]: ...
    async def release(self, lease: Lease) -> bool: ...
    async def release_all(self, node: str) -> int: ...
    async def register_node(self, node: str) -> None: ...


@dataclass
class _Held:
    lease: Lease
    acquired_at: float  # trio.current_time() when the database was asked for it
    valid_until: float  # trio.current_time() until which no database check is needed


class Ownership(Observer):
    """This node's leases. A ``SessionOwnership`` for the supervisor and an ``Observer``
    (a forgotten session's lease is released).

    Args:
        leases: the database's lease table.
        node: this node's id.
        ask_hand_off: sends "please hand over this session" to the node holding
            ``lease`` (``app.cluster._handoff``); it must not wait for the answer.
        lease_ttl_s: a lease's time to live; renewed every third of it.
        claim_timeout_s: how long a turn waits for a session another node drives.
    """

    def __init__(
        self,
        leases: LeaseTable,
        node: str,
        ask_hand_off: Callable[[Lease], Awaitable[None]],
        *,
        lease_ttl_s: float,
        claim_timeout_s: float,
    ) -> None:
        self.node = node
        self._leases = leases
        self._ask_hand_off = ask_hand_off
        self.lease_ttl_s = lease_ttl_s
        self.claim_timeout_s = claim_timeout_s
        self._held: dict[SessionKey, _Held] = {}
        self._handing_off: dict[SessionKey, trio.Event] = {}
        self._supervisor: Supervisor | None = None
        self._nursery: trio.Nursery | None = None
        self.hand_offs = 0  # sessions this node gave to another
        self.take_overs = 0  # sessions this node took from another (or from a dead one)
        self.lost = 0  # leases that ran out under this node (it was paused or cut off)
        # Every node of the cluster as of the last renewal: (id, last seen, sessions held).
        self.peers: list[tuple[str, float, int]] = []
        self.holders: dict[SessionKey, str] = {}  # the node driving each session, likewise

    async def register(self) -> None:
        """Record this node in the cluster's registry (as started now)."""
        await self._leases.register_node(self.node)

    def attach(self, supervisor: Supervisor, nursery: trio.Nursery) -> None:
        """Give the supervisor whose sessions are handed off, and the nursery for
        background releases. Not a checkpoint."""
        self._supervisor, self._nursery = supervisor, nursery

    # -- SessionOwnership ---------------------------------------------------------------

    async def claim(self, key: SessionKey) -> None:
        """Return once this node holds ``key``'s lease (see the module docstring).

        Raises:
            CapacityError: another node still holds it after ``claim_timeout_s``.
        """
        while (handing_off := self._handing_off.get(key)) is not None:
            await handing_off.wait()  # this node is giving it away: ask for it back after
        held = self._held.get(key)
        if held is not None and trio.current_time() < held.valid_until:
            return
        deadline = trio.current_time() + self.claim_timeout_s
        asked: int | None = None  # the token whose holder was asked to hand over
        pause = 0.02
        while True:
            started = trio.current_time()
            try:
                lease = await self._leases.acquire(key, self.node, self.lease_ttl_s)
            except LeaseHeld as exc:
                other = exc.lease
                if asked != other.token:
                    asked = other.token
                    await self._ask_hand_off(other)
                if trio.current_time() + pause > deadline:
                    raise CapacityError(
                        f"session {key.session_id} is driven by node {other.node}, which did "
                        f"not hand it over within {self.claim_timeout_s:g} s",
                        retry_after_s=max(1, math.ceil(self.lease_ttl_s / 3)),
                    ) from None
                await trio.sleep(pause)
                pause = min(pause * 2, 0.25)
                continue
            if held is None or held.lease.token != lease.token:
                self.take_overs += asked is not None
            valid_until = started + LOCAL_SHARE * self.lease_ttl_s
            self._held[key] = _Held(lease, started, valid_until)
            return

    def fence(self, key: SessionKey) -> int | None:
        """The fencing token of ``key``'s lease if this node holds it, else ``None``.
        Not a checkpoint."""
        held = self._held.get(key)
        return None if held is None else held.lease.token

    def holds(self, key: SessionKey) -> bool:
        """Whether this node holds ``key``'s lease. Not a checkpoint."""
        return key in self._held

    # -- Giving sessions up -------------------------------------------------------------

    async def hand_off(self, key: SessionKey) -> None:
        """Another node asks for ``key``: let its turns here finish, stop its CLI, and
        release its lease. A request for a session this node does not hold is ignored.
        Goes on if cancelled only up to the CLI's close."""
        if key not in self._held or key in self._handing_off:
            return
        done = self._handing_off[key] = trio.Event()
        try:
            assert self._supervisor is not None
            await self._supervisor.hand_off(key)
            held = self._held.pop(key, None)
            if held is not None:
                await self._leases.release(held.lease)
                self.hand_offs += 1
                log.info("session %s handed over (lease %d)", key, held.lease.token)
        finally:
            del self._handing_off[key]
            done.set()

    def session_forgotten(self, key: SessionKey) -> None:
        """Observer: a session forgotten here (deleted, retention, failures) gives its
        lease back in the background. Not a checkpoint."""
        held = self._held.pop(key, None)
        if held is not None and self._nursery is not None:
            self._nursery.start_soon(self._leases.release, held.lease)

    async def release(self, key: SessionKey) -> None:
        """Give ``key``'s lease back now (after deleting the session)."""
        held = self._held.pop(key, None)
        if held is not None:
            await self._leases.release(held.lease)

    async def release_all(self) -> None:
        """Give every lease back (at shutdown, once every CLI is closed)."""
        self._held.clear()
        released = await self._leases.release_all(self.node)
        log.info("released %d session leases", released)

    # -- Renewal ------------------------------------------------------------------------

    async def renew_forever(self) -> None:
        """Renew this node's leases every third of ``lease_ttl_s`` until cancelled; a
        lease the database no longer has for this node is given up (its actor stopped).
        A failed renewal is logged and retried at the next tick: the leases then run out
        locally (``claim`` asks the database again) before they do in the database."""
        while True:
            await trio.sleep(self.lease_ttl_s / 3)
            started = trio.current_time()
            try:
                kept = await self._leases.renew(self.node, self.lease_ttl_s)
            except Exception:
                log.exception("could not renew this node's session leases")
                continue
            try:
                self.peers = await self._leases.cluster()
                self.holders = await self._leases.holders()
            except Exception:
                log.exception("could not read the cluster's nodes")
            for key, held in list(self._held.items()):
                if kept.get(key) == held.lease.token:
                    held.valid_until = started + LOCAL_SHARE * self.lease_ttl_s
                elif held.acquired_at < started and self._held.get(key) is held:
                    self._lost(key)  # (one acquired since the renewal began is fine)

    def _lost(self, key: SessionKey) -> None:
        """The lease of ``key`` is gone (another node took it after it ran out): stop
        driving the session now. Not a checkpoint."""
        del self._held[key]
        self.lost += 1
        log.warning("session %s: this node lost its lease; stopping its CLI", key)
        if self._supervisor is not None and self._nursery is not None:
            self._nursery.start_soon(self._supervisor.hand_off, key)

    def stats(self) -> dict[str, int | str]:
        """Counters for operators. Not a checkpoint."""
        return {
            "node": self.node,
            "leases": len(self._held),
            "hand_offs": self.hand_offs,
            "take_overs": self.take_overs,
            "leases_lost": self.lost,
        }
