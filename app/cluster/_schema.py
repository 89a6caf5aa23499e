"""The cluster's PostgreSQL schema, as numbered migrations applied at start-up.

Each node applies the steps its database lacks when it starts, in one transaction
holding an advisory lock, so nodes starting at once apply each step once; applied
versions are recorded in ``schema_migrations``. Steps are only ever appended.

The session tables are the single-node SQLite store's (``app.sessions._store``), with
PostgreSQL's types, plus ``rowid`` on ``lineage`` for the order the marks were recorded
in (SQLite has it implicitly).
"""

from __future__ import annotations

import psycopg

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE sessions (
            principal TEXT NOT NULL,
            session_id TEXT NOT NULL,
            claude_session_id TEXT,
            workspace TEXT NOT NULL,
            model TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            last_active_at DOUBLE PRECISION NOT NULL,
            turns BIGINT NOT NULL,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            session_model TEXT,
            PRIMARY KEY (principal, session_id)
        );
        CREATE TABLE lineage (
            rowid BIGSERIAL PRIMARY KEY,
            principal TEXT NOT NULL,
            session_id TEXT NOT NULL,
            turn BIGINT NOT NULL,
            hash TEXT NOT NULL,
            assistant_uuid TEXT,
            claude_session_id TEXT,
            recorded_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX lineage_by_session ON lineage (principal, session_id);
        CREATE TABLE forks (
            principal TEXT NOT NULL,
            session_id TEXT NOT NULL,
            parent_session_id TEXT NOT NULL,
            parent_turn BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (principal, session_id)
        );
        """,
    ),
    (
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
        CREATE INDEX leases_by_node ON leases (node);
        """,
    ),
    (
        3,
        """
        CREATE TABLE transcripts (
            seq BIGSERIAL PRIMARY KEY,
            claude_session_id TEXT NOT NULL,
            subpath TEXT NOT NULL DEFAULT '',
            uuid TEXT,
            entry TEXT NOT NULL
        );
        CREATE UNIQUE INDEX transcripts_by_uuid
            ON transcripts (claude_session_id, subpath, uuid) WHERE uuid IS NOT NULL;
        CREATE INDEX transcripts_in_order ON transcripts (claude_session_id, subpath, seq);
        """,
    ),
]

# Any 64-bit number the nodes agree on: the advisory lock held while migrating.
_LOCK = 0x63636163746F7273  # "ccactors"


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply the missing steps of ``MIGRATIONS`` on ``conn`` (blocking), in one
    transaction; returns the versions applied now."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for version, sql in MIGRATIONS:
            if version not in done:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
    return applied
