"""One ordered queue of database work and the one task that applies it, for the session
store (``app.sessions._store``): every statement, read or write, in the order it was made,
each in its own transaction, in a worker thread (``Backend.transaction``). A failing
database is logged and counted (``errors``), never a crash; a full queue drops a record
(``dropped``).

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
        """The writer: apply queued statements one at a time until the queue is closed.
        If cancelled (shutdown), still applies what is queued, shielded for at most
        ``drain_timeout_s`` seconds, so the last turns are recorded."""
        with queue:
            try:
                async for operation in queue:
                    await self._apply(operation)
            finally:
                with trio.move_on_after(drain_timeout_s, shield=True):
                    while True:
                        try:
                            operation = queue.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        await self._apply(operation)

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

    async def _apply(self, operation: Operation) -> None:
        statements = [(operation.sql, operation.args), *operation.more]
        try:
            results = await trio.to_thread.run_sync(
                self._backend.transaction, statements, operation.guard
            )
            if results is None:  # the lease check found no current lease
                self._refused(operation.guard and tuple(operation.guard[1][:2]))
            else:
                operation.results = results
        except self._backend.errors as exc:
            self.errors += 1
            operation.error = exc
            if operation.done is None:  # nobody waits to hear of it
                log.exception("could not write to the session database")
        finally:
            if operation.done is not None:
                operation.done.set()
