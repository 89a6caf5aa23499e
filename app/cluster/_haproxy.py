"""The HAProxy configuration for a ccactors cluster (HAProxy 2.6 or later).

Every request of one conversation should reach the node that drives it, so requests are
hashed (consistent hashing: a node joining or leaving moves only its share) on, first
match wins: the header ``X-Session-ID``; the header ``X-Claude-Code-Session-Id``; the
session id in a ``/v1/sessions/{id}/...`` path (WebSocket, management API); the API key
(``x-api-key``, else ``Authorization``), so that a client that sends no session id and
lets the lineage find its conversation lands on one node. A request with none of them is
balanced round robin. A node that fails its health check (``GET /health``, HTTP/1.1
with ``Host: localhost``, which ccactors accepts like any loopback name: 503 while it
drains) gets no new requests; a request whose node is down goes to the next one
(``option redispatch``), where the session is taken over. Any node serves any request
correctly; the hashing only saves hand-offs.

``docs/how-to/cluster.md`` shows this configuration (a test keeps the two the same).
"""

from __future__ import annotations

from collections.abc import Sequence

TEMPLATE = """\
global
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    retries 2
    option redispatch 1

frontend ccactors
    bind {bind}
    default_backend ccactors_nodes

backend ccactors_nodes
    acl has_api_key req.hdr(x-api-key) -m found
    acl has_session_path path_beg /v1/sessions/
    acl has_cc_session req.hdr(x-claude-code-session-id) -m found
    acl has_session_id req.hdr(x-session-id) -m found
    # The conversation's key, lowest priority first (a later match overrides).
    http-request set-var(txn.conversation) req.hdr(authorization)
    http-request set-var(txn.conversation) req.hdr(x-api-key) if has_api_key
    http-request set-var(txn.conversation) path,field(4,/) if has_session_path
    http-request set-var(txn.conversation) req.hdr(x-claude-code-session-id) if has_cc_session
    http-request set-var(txn.conversation) req.hdr(x-session-id) if has_session_id
    balance hash var(txn.conversation)
    hash-type consistent
    option httpchk
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
{servers}
"""


def haproxy_config(bind: str, nodes: Sequence[tuple[str, str]]) -> str:
    """The configuration: a frontend on ``bind`` (``host:port``) and one server per
    ``(name, host:port)`` in ``nodes``."""
    servers = "\n".join(f"    server {name} {address} check" for name, address in nodes)
    return TEMPLATE.format(bind=bind, servers=servers)
