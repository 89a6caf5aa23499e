"""Hand-off requests between nodes, over PostgreSQL's ``LISTEN``/``NOTIFY``.

A node that needs a session another node holds sends a notification on the channel
``ccactors_hand_off`` naming the holder, the session and the lease's fencing token;
every node listens on the channel and acts on the notifications that name it. The
database is the only thing the nodes share (no node-to-node HTTP, so no second surface
to authenticate and expose), and a notification is delivered only to nodes connected
now: a dead node's lease simply runs out.

Payload (JSON, PostgreSQL limits it to 8000 bytes; ours are < 400):
``{"node": str, "principal": str, "session_id": str, "token": int}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import psycopg
import trio

from actors import SessionKey

from ._database import Database
from ._leases import Lease

log = logging.getLogger(__name__)

CHANNEL = "ccactors_hand_off"
# How long one wait for notifications blocks its worker thread; also how long a
# cancelled listener may take to stop.
POLL_S = 0.5


def _payload(lease: Lease) -> str:
    key = lease.key
    return json.dumps(
        {
            "node": lease.node,
            "principal": key.principal,
            "session_id": key.session_id,
            "token": lease.token,
        }
    )


def _wait_for_notifications(conn: psycopg.Connection) -> list[psycopg.Notify]:
    """The notifications that arrive within ``POLL_S`` (blocking)."""
    return list(conn.notifies(timeout=POLL_S, stop_after=16))


class HandOffRequests:
    """Sends (through ``database``'s pool) and receives (on a connection of its own to
    ``url``, which ``LISTEN`` needs) hand-off requests for node ``node``."""

    def __init__(self, url: str, node: str, database: Database) -> None:
        self._url = url
        self.node = node
        self._database = database
        self.sent = 0
        self.received = 0

    async def ask(self, lease: Lease) -> None:
        """Ask the holder of ``lease`` to hand its session over. Does not wait for it
        to do so; a failure to send is logged (the lease runs out in the end anyway)."""
        try:
            await self._database.fetch("SELECT pg_notify(%s, %s)", (CHANNEL, _payload(lease)))
            self.sent += 1
        except psycopg.Error:
            log.exception("could not ask node %s to hand over %s", lease.node, lease.key)

    async def listen(
        self,
        on_request: Callable[[SessionKey], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``on_request(key)`` (synchronously; it must not block) for every request
        addressed to this node, until cancelled; started once it listens. A lost
        connection is reopened after a second, and logged."""
        started = False
        while True:
            try:
                conn = await trio.to_thread.run_sync(
                    lambda: psycopg.connect(self._url, autocommit=True, connect_timeout=5)
                )
            except psycopg.Error:
                if not started:
                    raise
                log.exception("hand-off listener: could not reconnect")
                await trio.sleep(1)
                continue
            try:
                await trio.to_thread.run_sync(conn.execute, f"LISTEN {CHANNEL}")
                if not started:
                    started = True
                    task_status.started()
                while True:
                    notes = await trio.to_thread.run_sync(_wait_for_notifications, conn)
                    for note in notes:
                        self._dispatch(note.payload, on_request)
            except psycopg.Error:
                log.exception("hand-off listener: connection lost")
                await trio.sleep(1)
            finally:
                conn.close()

    def _dispatch(self, payload: str, on_request: Callable[[SessionKey], None]) -> None:
        try:
            request = json.loads(payload)
            if request["node"] != self.node:
                return
            key = SessionKey(request["session_id"], request["principal"])
        except (ValueError, KeyError, TypeError):
            log.warning("hand-off listener: ignored a malformed request %r", payload[:200])
            return
        self.received += 1
        on_request(key)
