"""Many ccactors nodes serving the same sessions: leases and hand-offs between nodes,
transcripts and records in PostgreSQL, HAProxy in front (docs/explanation/cluster.md)."""
