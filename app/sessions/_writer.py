"""One ordered queue of database work and the one task that applies it, for the session
store (``app.sessions._store``): every statement, read or write, in the order it was made,
each in its own transaction, in a worker thread (``Backend.transaction``; what queued
meanwhile goes in one trip). A failing database is logged and counted (``errors``), never
a crash; a full queue drops a record (``dropped``).

In a cluster, writes about a session are fenced: each carries this node's id and the
token of its lease on the session (``Fence``), and is applied only if that lease is
still current, checked in the same transaction with the lease row locked (``FOR
SHARE``), so a node that lost a session (paused past its lease) cannot overwrite what
the next owner records. A write refused so is counted (``fenced``) and logged, as a
warning the first time for each session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import trio

from actors import SessionKey

from ._backends import Backend, Statement

log = logging.getLogger(__name__)

# Operations applied in one trip to the worker thread at most. Each trip costs the event
# loop a thread hand-off and a wake-up (py-spy, 16 sessions x 10 turns at once: ~10% of
# the server's CPU went to the store's trips, two or three a turn, one per operation).
MAX_BATCH = 64

# The lease check of a fenced write: (principal, session id, node, token).
LEASE_IS_CURRENT = (
    "SELECT 1 FROM leases WHERE principal = ? AND session_id = ? AND node = ? AND token = ? "
    "FOR SHARE"
)


class Fence(Protocol):
    """This node's leases, in a cluster (``app.cluster._ownership.Ownership``)."""

    node: str

    def fence(self, key: SessionKey) -> int | None:
        """The token of this node's lease on ``key``, or ``None`` if it holds none."""
        ...


@dataclass(eq=False)
class Operation:
    """One statement for the writer (and ``more``, applied after it in the same
    transaction, if ``guard`` finds a row); ``done`` is set once it was applied (or
    failed). ``results``: each statement's rows."""

    sql: str
    args: tuple[object, ...]
    done: trio.Event | None = None
    more: tuple[tuple[str, tuple[object, ...]], ...] = ()
    guard: Statement | None = None
    results: list[list[tuple]] = field(default_factory=list)
    error: Exception | None = None


class OrderedWriter:
    """The queue's two ends: methods that queue work (``_run``, ``_enqueue``) and the
    writer task (``write_in_order``), with the counters."""

    def __init__(
        self,
        backend: Backend,
        queue: trio.MemorySendChannel[Operation],
        fence: Fence | None = None,
    ) -> None:
        self._backend = backend
        self._queue = queue
        self._fence = fence
        self.errors = 0
        self.dropped = 0  # records not queued because the queue was full
        self.fenced = 0  # writes refused: this node did not hold the session's lease
        self._warned: set[tuple[object, ...]] = set()  # sessions whose refusal was logged

    def counters(self) -> dict[str, int]:
        """The store's counters for operators (``/v1/stats``). Not a checkpoint."""
        return {
            "store_errors": self.errors,
            "store_writes_dropped": self.dropped,
            "store_writes_fenced": self.fenced,
            "store_reconnects": self.reconnects,
        }

    @property
    def reconnects(self) -> int:
        """How often a lost database connection was found and reopened (PostgreSQL)."""
        return getattr(self._backend, "reconnects", 0)

    def _guard(self, principal: str, session_id: str) -> Statement | bool | None:
        """The lease check for a write about a session: ``None`` without fencing,
        ``False`` if this node holds no lease on it (the write is refused now)."""
        if self._fence is None:
            return None
        token = self._fence.fence(SessionKey(session_id, principal))
        if token is None:
            return False
        return LEASE_IS_CURRENT, (principal, session_id, self._fence.node, token)

    async def _run(
        self,
        sql: str,
        *args: object,
        more: tuple[tuple[str, tuple[object, ...]], ...] = (),
        about: tuple[str, str] | None = None,
    ) -> list[tuple]:
        """Queue a statement (and ``more`` in its transaction) behind every earlier one
        and wait for its rows.

        Raises:
            sqlite3.Error, psycopg.Error: the statement failed.
            trio.ClosedResourceError: the store is closed.
        """
        results = await self._run_all(sql, *args, more=more, about=about)
        return results[0] if results else []

    async def _run_all(
        self,
        sql: str,
        *args: object,
        more: tuple[tuple[str, tuple[object, ...]], ...] = (),
        about: tuple[str, str] | None = None,
    ) -> list[list[tuple]]:
        """``_run``, returning the rows of every statement (none if fenced off)."""
        guard = None if about is None else self._guard(*about)
        if guard is False:
            self._refused(about)
            return []
        operation = Operation(sql, args, trio.Event(), more, guard or None)
        await self._queue.send(operation)
        assert operation.done is not None
        await operation.done.wait()
        if operation.error is not None:
            raise operation.error
        return operation.results

    def _enqueue(
        self,
        sql: str,
        *args: object,
        more: tuple[tuple[str, tuple[object, ...]], ...] = (),
        about: tuple[str, str] | None = None,
    ) -> None:
        """Queue a write without waiting (from an ``Observer`` method); ``about``
        (principal, session id) fences it in a cluster. Not a checkpoint."""
        guard = None if about is None else self._guard(*about)
        if guard is False:
            self._refused(about)
            return
        try:
            self._queue.send_nowait(Operation(sql, args, more=more, guard=guard or None))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped += 1
            log.error("the session database queue is full or closed: a record was dropped")

    async def write_in_order(
        self, queue: trio.MemoryReceiveChannel[Operation], drain_timeout_s: float
    ) -> None:
        """The writer: apply queued statements in order until the queue is closed: what
        queued while a batch was applied goes in the next one (up to ``MAX_BATCH``). If
        cancelled (shutdown), still applies what is queued, shielded for at most
        ``drain_timeout_s`` seconds, so the last turns are recorded."""
        with queue:
            try:
                async for operation in queue:
                    await self._apply([operation, *_queued(queue, MAX_BATCH - 1)])
            finally:
                with trio.move_on_after(drain_timeout_s, shield=True):
                    while batch := _queued(queue, MAX_BATCH):
                        await self._apply(batch)

    def _refused(self, about: tuple[object, ...] | None) -> None:
        """Count a fenced-off write; log it, as a warning the first time per session."""
        self.fenced += 1
        first = about not in self._warned
        if first:
            if len(self._warned) >= 10_000:
                self._warned.clear()
            self._warned.add(about)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "session %s: not recorded, this node does not hold its lease",
            about,
        )

    async def _apply(self, batch: list[Operation]) -> None:
        """Apply ``batch`` in order, each operation in its own transaction, in one trip to
        a worker thread; then count and log what failed or was fenced off, and wake each
        operation's waiter (also if the trip itself failed)."""
        try:
            outcomes = await trio.to_thread.run_sync(self._transactions, batch)
            for operation, outcome in zip(batch, outcomes, strict=True):
                if outcome is None:  # the lease check found no current lease
                    self._refused(operation.guard and tuple(operation.guard[1][:2]))
                elif isinstance(outcome, Exception):
                    self.errors += 1
                    operation.error = outcome
                    if operation.done is None:  # nobody waits to hear of it
                        log.error("could not write to the session database", exc_info=outcome)
                else:
                    operation.results = outcome
        finally:
            for operation in batch:
                if operation.done is not None:
                    operation.done.set()

    def _transactions(self, batch: list[Operation]) -> list[list[list[tuple]] | Exception | None]:
        """Each operation's transaction, in order (blocking: in a worker thread): its
        rows, ``None`` if its lease check failed, or the backend's error."""
        outcomes: list[list[list[tuple]] | Exception | None] = []
        for operation in batch:
            statements = [(operation.sql, operation.args), *operation.more]
            try:
                outcomes.append(self._backend.transaction(statements, operation.guard))
            except self._backend.errors as exc:
                outcomes.append(exc)
        return outcomes


def _queued(queue: trio.MemoryReceiveChannel[Operation], limit: int) -> list[Operation]:
    """Up to ``limit`` operations queued now, oldest first. Not a checkpoint."""
    batch: list[Operation] = []
    while len(batch) < limit:
        try:
            batch.append(queue.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return batch
