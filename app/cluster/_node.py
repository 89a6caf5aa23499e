"""One ccactors node of a cluster: its id, its leases, its hand-off listener, and the
shared transcripts, for as long as the server runs (``open_node``).

A server is a node of a cluster when its ``database_url`` is a PostgreSQL URL; every
node with the same database serves the same sessions (see
``docs/explanation/cluster.md``).
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from actors import SessionKey, Supervisor

from ._database import Database, open_database
from ._handoff import HandOffRequests
from ._leases import Leases
from ._ownership import Ownership
from ._transcripts import Transcripts

log = logging.getLogger(__name__)

# Seconds the leases get to be released at shutdown, after every CLI is closed.
RELEASE_TIMEOUT_S = 10.0


def default_node_id() -> str:
    """``<host name>-<6 hex digits>``: unique per process even on one machine."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Node:
    """A running node (``open_node``). ``ownership`` goes to the supervisor (and the
    store, as its fence); ``transcripts`` to the CLI options (``CliOptions.session_store``
    is ``transcripts.for_cli``) and the management API."""

    id: str
    database: Database
    ownership: Ownership
    transcripts: Transcripts
    requests: HandOffRequests
    _nursery: trio.Nursery

    async def serve(self, supervisor: Supervisor) -> None:
        """Record this node in the cluster's registry, then renew its leases and answer
        hand-off requests for ``supervisor``'s sessions (until the node is closed). The
        tables must exist: the session store migrates them (``app.cluster._schema``)."""
        await self.ownership.register()
        self.ownership.attach(supervisor, self._nursery)
        self._nursery.start_soon(self.ownership.renew_forever)

        def on_request(key: SessionKey) -> None:
            self._nursery.start_soon(self.ownership.hand_off, key)

        await self._nursery.start(self.requests.listen, on_request)

    def holder(self, key: SessionKey) -> str | None:
        """The node driving session ``key``: this one if it holds the lease, else as of
        the last lease renewal; ``None`` if none does. Not a checkpoint."""
        return self.id if self.ownership.holds(key) else self.ownership.holders.get(key)

    def peers(self) -> list[dict[str, Any]]:
        """Every node of the cluster as of this node's last lease renewal: ``node``,
        ``last_seen_s`` (seconds ago), ``sessions`` (leases held), ``this`` (this node).
        Not a checkpoint."""
        now = time.time()
        return [
            {
                "node": node,
                "last_seen_s": round(max(0.0, now - seen), 1),
                "sessions": held,
                "this": node == self.id,
            }
            for node, seen, held in self.ownership.peers
        ]

    def stats(self) -> dict[str, Any]:
        """Counters for operators (``/v1/stats``). Not a checkpoint."""
        return {
            **self.ownership.stats(),
            "hand_off_requests_sent": self.requests.sent,
            "hand_off_requests_received": self.requests.received,
            "transcript_entries_fenced": self.transcripts.fenced,
        }


@asynccontextmanager
async def open_node(
    database_url: str, *, node_id: str | None, lease_ttl_s: float, claim_timeout_s: float
) -> AsyncIterator[Node]:
    """Join the cluster of ``database_url`` as node ``node_id`` (default
    ``default_node_id()``) for the block.

    Leaving the block (normally or by cancellation) releases every lease this node
    still holds, for at most ``RELEASE_TIMEOUT_S`` seconds: leave it only after every
    CLI of this node is closed, so that no two nodes ever run one session's CLI.

    Raises:
        psycopg.Error, psycopg_pool.PoolTimeout: the database cannot be reached.
    """
    node_id = node_id or default_node_id()
    async with open_database(database_url) as database:
        leases = Leases(database)
        requests = HandOffRequests(database_url, node_id, database)
        ownership = Ownership(
            leases,
            node_id,
            requests.ask,
            lease_ttl_s=lease_ttl_s,
            claim_timeout_s=claim_timeout_s,
        )
        transcripts = Transcripts(database, node_id, ownership.fence)
        log.info("cluster node %s (leases of %g s)", node_id, lease_ttl_s)
        async with trio.open_nursery() as nursery:
            try:
                yield Node(node_id, database, ownership, transcripts, requests, nursery)
            finally:
                with trio.move_on_after(RELEASE_TIMEOUT_S, shield=True):
                    await ownership.release_all()
                nursery.cancel_scope.cancel()
