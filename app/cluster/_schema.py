"""The cluster's PostgreSQL schema: the session store's migrations
(``app.sessions._schema``) followed by the cluster's own steps, applied by each node at
start-up (``migrate``).

Applying is one transaction holding an advisory lock, so nodes starting at once apply
each step once; applied versions are recorded in ``schema_migrations``. Steps are only
ever appended, with versions after the last one in the list.
"""

from __future__ import annotations

import psycopg

from ..sessions._schema import SESSION_MIGRATIONS, Migration, apply_migrations

MIGRATIONS: list[Migration] = [
    *SESSION_MIGRATIONS,
    # Which node drives which session (app.cluster._leases), and the node registry.
    Migration(
        2,
        """
        CREATE TABLE nodes (
            node TEXT PRIMARY KEY,
            url TEXT NOT NULL DEFAULT '',
            started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE leases (
            principal TEXT NOT NULL,
            session_id TEXT NOT NULL,
            node TEXT NOT NULL,
            token BIGINT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (principal, session_id)
        );
        CREATE INDEX leases_by_node ON leases (node)
        """,
        dialects=("postgresql",),
    ),
    # The CLIs' transcripts, shared by every node (app.cluster._transcripts).
    Migration(
        3,
        """
        CREATE TABLE transcripts (
            seq {identity},
            claude_session_id TEXT NOT NULL,
            subpath TEXT NOT NULL DEFAULT '',
            uuid TEXT,
            entry TEXT NOT NULL
        );
        CREATE UNIQUE INDEX transcripts_by_uuid
            ON transcripts (claude_session_id, subpath, uuid) WHERE uuid IS NOT NULL;
        CREATE INDEX transcripts_in_order ON transcripts (claude_session_id, subpath, seq)
        """,
        dialects=("postgresql",),
    ),
]


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply the missing steps of ``MIGRATIONS`` on ``conn`` (blocking, not in a
    transaction), in one transaction; returns the versions applied now."""
    return apply_migrations(conn, "postgresql", MIGRATIONS)
