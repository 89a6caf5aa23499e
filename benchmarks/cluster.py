"""What the cluster costs: a warm turn through HAProxy against the same turn straight to
the node that serves it, and a turn that moves its session to another node (hand-off:
the owner closes the session's CLI and releases its lease, the new node resumes the
conversation from PostgreSQL).

A real local cluster (``app.cluster._local``: throw-away PostgreSQL, two offline nodes,
HAProxy), the official ``anthropic`` client, non-streaming turns. The direct and
through-HAProxy turns alternate so that drift on a busy machine hits both alike; the
hand-off turns alternate one session between the two nodes, against warm turns of a
session that stays put.

Run with ``just bench-cluster`` (``--turns N``, default 20). Prints medians and 90th
percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import time

import anthropic
import trio

from app.cluster._local import open_local_cluster

from .lineage import report
from .server import MODEL


def timed_turn(url: str, session_id: str) -> tuple[float, str]:
    """One warm non-streaming turn: (seconds, serving node)."""
    with anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0, timeout=120) as client:
        started = time.monotonic()
        raw = client.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"X-Session-ID": session_id},
        )
        took = time.monotonic() - started
        raw.parse()
    return took, raw.headers["X-Served-By"]


def measure(url: str, node_urls: dict[str, str], turns: int) -> None:
    _, owner = timed_turn(url, "bench-routed")  # starts its CLI on the node HAProxy picks
    timed_turn(node_urls[owner], "bench-routed")
    direct, routed = [], []
    for _ in range(turns):
        routed.append(timed_turn(url, "bench-routed")[0])
        direct.append(timed_turn(node_urls[owner], "bench-routed")[0])
    report("warm turn straight to its node", direct)
    report("warm turn through HAProxy", routed)

    first, second = sorted(node_urls)
    timed_turn(node_urls[first], "bench-moving")
    moving, staying = [], []
    for number in range(turns):
        target = node_urls[second if number % 2 == 0 else first]
        moving.append(timed_turn(target, "bench-moving")[0])
        staying.append(timed_turn(node_urls[first], "bench-routed-2")[0])
    report("warm turn, session stays on its node", staying[1:])
    report("turn that moves the session (hand-off)", moving)


async def main(turns: int) -> None:
    async with open_local_cluster(2, port=0) as cluster:
        node_urls = {node.id: node.url for node in cluster.nodes}
        await trio.to_thread.run_sync(measure, cluster.url, node_urls, turns)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    trio.run(main, parser.parse_args().turns)
