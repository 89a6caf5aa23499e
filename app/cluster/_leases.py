"""Session leases and the node registry in PostgreSQL: which node drives which session.

One row per session ever driven in the cluster: the owner node, its expiry (by the
database's clock, never a node's) and a fencing token that grows by one at every change
of owner and is never reused (a released lease keeps its row, expired). Every statement
is one transaction and race-free: two nodes acquiring one lease at once get one winner.
The tables are in ``app.cluster._schema``.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors import SessionKey

from ._database import Database

# Take the lease if it is free, expired or already ours. A new owner (or an expired
# lease taken again) gets the next token; renewing one's own live lease keeps it.
_ACQUIRE = """
INSERT INTO leases AS l (principal, session_id, node, token, expires_at)
VALUES (%(principal)s, %(session_id)s, %(node)s, 1, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (principal, session_id) DO UPDATE
SET node = excluded.node,
    expires_at = excluded.expires_at,
    token = CASE WHEN l.node = excluded.node AND l.expires_at > now()
                 THEN l.token ELSE l.token + 1 END
WHERE l.node = excluded.node OR l.expires_at <= now()
RETURNING token, extract(epoch FROM expires_at)
"""
_HOLDER = """
SELECT node, token, extract(epoch FROM expires_at), expires_at > now() FROM leases
WHERE principal = %s AND session_id = %s
"""
_RENEW = """
UPDATE leases SET expires_at = now() + make_interval(secs => %s)
WHERE node = %s AND expires_at > now()
RETURNING principal, session_id, token
"""
_SEEN = "UPDATE nodes SET last_seen = now() WHERE node = %s"
_RELEASE = """
UPDATE leases SET expires_at = '-infinity'
WHERE principal = %s AND session_id = %s AND node = %s AND token = %s
"""
_RELEASE_ALL = "UPDATE leases SET expires_at = '-infinity' WHERE node = %s AND expires_at > now()"
_REGISTER = """
INSERT INTO nodes (node) VALUES (%s)
ON CONFLICT (node) DO UPDATE SET started_at = now(), last_seen = now()
"""


@dataclass(frozen=True)
class Lease:
    """Node ``node`` drives session ``key`` until ``expires_at`` (seconds since the
    epoch, by the database's clock); its writes carry ``token``."""

    key: SessionKey
    node: str
    token: int
    expires_at: float


class LeaseHeld(Exception):
    """Another node holds the session's lease, and it has not expired (``lease``)."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"session {lease.key.session_id} is held by node {lease.node}")
        self.lease = lease


class Leases:
    """The lease table and node registry on ``database``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def acquire(self, key: SessionKey, node: str, ttl_s: float) -> Lease:
        """Take ``key``'s lease for ``node`` for ``ttl_s`` seconds: a free or expired one
        with the next token, ``node``'s own with its token kept.

        Raises:
            LeaseHeld: another node holds it.
        """
        args = {
            "principal": key.principal,
            "session_id": key.session_id,
            "node": node,
            "ttl": ttl_s,
        }
        while True:
            rows = await self._database.fetch(_ACQUIRE, args)
            if rows:
                token, expires_at = rows[0]
                return Lease(key, node, token, float(expires_at))
            holder = await self._database.fetch(_HOLDER, (key.principal, key.session_id))
            if holder and holder[0][3]:
                other, token, expires_at, _ = holder[0]
                raise LeaseHeld(Lease(key, other, token, float(expires_at)))
            # It expired or was released in between: try again.

    async def holder(self, key: SessionKey) -> Lease | None:
        """The live lease of ``key``, or ``None``."""
        rows = await self._database.fetch(_HOLDER, (key.principal, key.session_id))
        if not rows or not rows[0][3]:
            return None
        node, token, expires_at, _ = rows[0]
        return Lease(key, node, token, float(expires_at))

    async def renew(self, node: str, ttl_s: float) -> dict[SessionKey, int]:
        """Extend every live lease of ``node`` by ``ttl_s`` seconds from now, and mark the
        node seen. Returns the leases still held, with their tokens."""
        rows = await self._database.fetch(_RENEW, (ttl_s, node))
        await self._database.execute(_SEEN, (node,))
        return {SessionKey(session_id, principal): token for principal, session_id, token in rows}

    async def release(self, lease: Lease) -> bool:
        """Give ``lease`` back (it expires now), if it is still this one (node and
        token). Returns whether it was."""
        key = lease.key
        args = (key.principal, key.session_id, lease.node, lease.token)
        return await self._database.execute(_RELEASE, args) == 1

    async def release_all(self, node: str) -> int:
        """Give back every live lease of ``node``; returns how many."""
        return await self._database.execute(_RELEASE_ALL, (node,))

    async def register_node(self, node: str) -> None:
        """Record ``node`` as started now."""
        await self._database.execute(_REGISTER, (node,))

    async def cluster(self) -> list[tuple[str, float, int]]:
        """Every node known, with the sessions it holds now: (id, last seen, seconds
        since the epoch, live leases), by id."""
        rows = await self._database.fetch(
            "SELECT n.node, extract(epoch FROM n.last_seen), "
            "count(l.node) FILTER (WHERE l.expires_at > now()) "
            "FROM nodes n LEFT JOIN leases l ON l.node = n.node "
            "GROUP BY n.node ORDER BY n.node"
        )
        return [(node, float(seen), held) for node, seen, held in rows]

    async def holders(self) -> dict[SessionKey, str]:
        """The node holding each session's live lease."""
        rows = await self._database.fetch(
            "SELECT principal, session_id, node FROM leases WHERE expires_at > now()"
        )
        return {SessionKey(session_id, principal): node for principal, session_id, node in rows}
