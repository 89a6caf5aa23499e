"""A cluster on one machine, all real: a throw-away PostgreSQL, three ccactors nodes
(``python -m app serve --offline``, each driving the real Claude Code CLI) and HAProxy in
front (``app.cluster._local``). Nodes are killed, stopped and paused with real signals.

The tests share one cluster and run in file order: the first two need two nodes alive,
the SIGKILL and SIGTERM tests each take one away. The cluster's processes belong to the
Trio thread that runs it: tests only signal them and read ``returncode`` (never ``poll``
or ``wait``, which would race with that thread's own wait).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Iterator

import anthropic
import httpx
import psutil
import psycopg
import pytest
import trio

from app.cluster._local import LocalCluster, LocalNode, open_local_cluster

from .conftest import claude_cli, wait_until

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"
LEASE_TTL_S = 4.0
NODE_ENV = {
    "CCACTORS_WARM_POOL_SIZE": "0",  # every CLI below is a session's
    "CCACTORS_LEASE_TTL_S": str(LEASE_TTL_S),
    "CCACTORS_CLAIM_TIMEOUT_S": "40",
    "CCACTORS_SHUTDOWN_GRACE_S": "20",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    """Three nodes behind HAProxy, run by Trio in a thread for the module's tests."""
    claude_cli()
    directory = tmp_path_factory.mktemp("cluster")
    ready: queue.Queue[LocalCluster | BaseException] = queue.Queue()
    stop = threading.Event()

    async def main() -> None:
        try:
            async with open_local_cluster(
                3, port=0, directory=directory, node_env=NODE_ENV
            ) as running:
                ready.put(running)
                await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)
        except BaseException as exc:
            ready.put(exc)
            raise

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    started = ready.get(timeout=240)
    if isinstance(started, BaseException):
        raise started
    yield started
    stop.set()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the cluster did not stop"


def turn(url: str, session_id: str, text: str = "[[count]]") -> tuple[str, str, float]:
    """One turn of ``session_id`` through ``url``: (reply text, serving node, seconds)."""
    with anthropic.Anthropic(base_url=url, api_key="unused", max_retries=3, timeout=120) as client:
        started = time.monotonic()
        raw = client.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": text}],
            extra_headers={"X-Session-ID": session_id},
        )
        took = time.monotonic() - started
        message = raw.parse()
    return "".join(block.text for block in message.content), raw.headers["X-Served-By"], took


def node(cluster: LocalCluster, node_id: str) -> LocalNode:
    return next(n for n in cluster.nodes if n.id == node_id)


def alive(cluster: LocalCluster) -> list[LocalNode]:
    return [n for n in cluster.nodes if n.process.returncode is None]


def cli_count(node: LocalNode) -> int:
    """The node's live ``claude`` child processes."""
    try:
        children = psutil.Process(node.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    count = 0
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "claude" in child.cmdline()[0]:
                count += 1
        except (psutil.NoSuchProcess, IndexError):
            pass
    return count


def leases_of(cluster: LocalCluster, node_id: str) -> int:
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM leases WHERE node = %s AND expires_at > now()", (node_id,)
        ).fetchone()
    assert row is not None
    return row[0]


def test_a_request_straight_to_another_node_is_served_after_a_hand_off(cluster):
    """Turns of one session sent to two nodes in turn are all served, in one
    conversation; the session's CLI moves with them, and at no instant do both nodes run
    a CLI (sampled every 20 ms throughout)."""
    first, second = alive(cluster)[:2]
    overlap: list[tuple[int, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            counts = (cli_count(first), cli_count(second))
            if all(counts):
                overlap.append(counts)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        replies = [
            turn(first.url, "direct"),
            turn(first.url, "direct"),
            turn(second.url, "direct"),
            turn(first.url, "direct"),
        ]
    finally:
        done.set()
        sampler.join()
    assert [text for text, _, _ in replies] == ["count=1", "count=2", "count=3", "count=4"]
    assert [by for _, by, _ in replies] == [first.id, first.id, second.id, first.id]
    assert overlap == []
    wait_until(lambda: cli_count(second) == 0, 10, "the second node's CLI to be closed")
    assert cli_count(first) == 1
    hand_off_s = [round(took, 2) for _, _, took in replies]
    print(f"turn times (s), hand-offs at the 3rd and 4th: {hand_off_s}")

    # The management API works from any node: the conversation from the shared store,
    # and a delete that takes the session over first.
    view = httpx.get(f"{second.url}/v1/sessions/direct/messages", timeout=30).json()
    said = [m["content"][0]["text"] for m in view["data"] if m["role"] == "assistant"]
    assert said == ["count=1", "count=2", "count=3", "count=4"]
    assert httpx.delete(f"{second.url}/v1/sessions/direct", timeout=60).status_code == 200
    wait_until(lambda: cli_count(first) == 0, 10, "the first node's CLI to be closed")
    assert httpx.get(f"{first.url}/v1/sessions/direct", timeout=30).status_code == 404
    assert turn(first.url, "direct")[0] == "count=1"  # a new conversation

    # The operator's overview on any node lists every node, with the sessions it holds.
    def peers() -> dict[str, dict]:
        overview = httpx.get(f"{second.url}/v1/dashboard/overview", timeout=10).json()
        return {peer["node"]: peer for peer in overview["nodes"]}

    wait_until(lambda: peers().get(first.id, {}).get("sessions") == 1, 10, "the overview")
    assert set(peers()) == {n.id for n in cluster.nodes} and peers()[second.id]["this"]
    # ... and its sessions table names the node driving each session.
    page = httpx.get(f"{second.url}/v1/dashboard/sessions/-/direct", timeout=10).json()
    assert page["session"]["node"] == first.id


def test_a_paused_node_cannot_write_to_a_session_taken_over(cluster):
    """A node paused (SIGSTOP) in the middle of a turn loses the session to another
    node once its lease runs out; resumed (SIGCONT), it finishes that turn, but nothing
    of it reaches the shared conversation or the session's record: the fencing token
    keeps its writes out."""
    owner, other = alive(cluster)[:2]
    assert turn(owner.url, "paused")[0] == "count=1"

    outcome: list[object] = []

    def slow_turn() -> None:
        try:
            outcome.append(turn(owner.url, "paused", "[[count]] [[chunks=10]] [[chunk_delay=0.3]]"))
        except Exception as exc:
            outcome.append(exc)

    slow = threading.Thread(target=slow_turn)
    slow.start()
    time.sleep(1.0)  # the turn is streaming inside the CLI
    owner.signal(signal.SIGSTOP)
    try:
        text, by, took = turn(other.url, "paused")
        assert (text, by) == ("count=2", other.id)  # the paused turn is not in it
        assert took > LEASE_TTL_S * 0.5  # it waited for the lease to run out
    finally:
        owner.signal(signal.SIGCONT)
    slow.join(timeout=60)
    wait_until(
        lambda: httpx.get(f"{owner.url}/v1/stats", timeout=10).json()["leases_lost"] >= 1,
        2 * LEASE_TTL_S,
        "the paused node to notice its lease is gone",
    )
    stats = httpx.get(f"{owner.url}/v1/stats", timeout=10).json()
    assert stats["transcript_entries_fenced"] + stats["store_writes_fenced"] > 0
    wait_until(lambda: cli_count(owner) == 0, 20, "the paused node's CLI to be stopped")
    assert turn(other.url, "paused")[0] == "count=3"


def test_a_killed_nodes_sessions_are_taken_over_after_the_lease_runs_out(cluster):
    """Through HAProxy: turns 1-2 on one node, which is then killed (SIGKILL); turn 3 is
    answered by another node within the lease's time to live plus one resume, and the
    conversation counts on to 5. The killed node's CLI does not outlive it for long."""
    replies = [turn(cluster.url, "killed"), turn(cluster.url, "killed")]
    owner = node(cluster, replies[0][1])
    assert replies[1][1] == owner.id
    clis = psutil.Process(owner.process.pid).children(recursive=True)
    owner.signal(signal.SIGKILL)
    wait_until(lambda: owner.process.returncode is not None, 10, "the node to die")
    replies += [turn(cluster.url, "killed") for _ in range(3)]
    assert [text for text, _, _ in replies] == [f"count={n}" for n in range(1, 6)]
    # (While HAProxy has not yet marked the dead node down, a redispatched request may
    # go to another node than the hash ring will pick after: one more hand-off.)
    assert owner.id not in {by for _, by, _ in replies[2:]}
    print(f"served again {replies[2][2]:.2f} s after SIGKILL (lease TTL {LEASE_TTL_S} s)")
    assert replies[2][2] < LEASE_TTL_S + 20
    wait_until(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in clis),
        30,
        "the killed node's CLI to exit",
    )


def test_a_stopped_node_hands_its_sessions_over_without_waiting_for_expiry(cluster):
    """SIGTERM drains a node: it closes its CLIs and releases its leases before it exits,
    so another node takes the session at its next turn without waiting for the lease."""
    replies = [turn(cluster.url, "stopped"), turn(cluster.url, "stopped")]
    owner = node(cluster, replies[0][1])
    assert leases_of(cluster, owner.id) >= 1
    owner.signal(signal.SIGTERM)
    wait_until(lambda: owner.process.returncode is not None, 30, "the node to drain and exit")
    assert leases_of(cluster, owner.id) == 0
    text, by, took = turn(cluster.url, "stopped")
    assert (text, by != owner.id) == ("count=3", True)
    print(f"served again {took:.2f} s after the node drained")


def test_the_cluster_command_starts_everything_and_stops_it_all_on_ctrl_c(tmp_path):
    """``ccactors cluster`` (what ``just cluster`` runs) prints a URL that answers, and
    Ctrl-C (SIGINT) stops PostgreSQL, HAProxy and every node: nothing is left running."""
    import subprocess
    import sys

    from app._settings import PROJECT_ROOT
    from app.cluster._local import free_port

    port = free_port()
    command = [sys.executable, "-m", "app", "cluster", "--nodes", "1", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        url = f"http://127.0.0.1:{port}"
        assert any(f"cluster of 1 nodes: {url}" in line for line in lines), lines
        health = httpx.get(f"{url}/health", timeout=10)
        assert (health.status_code, health.headers["X-Served-By"]) == (200, "node1")
        started = psutil.Process(process.pid).children(recursive=True)
        assert started  # PostgreSQL, HAProxy and the node
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "stopped" in process.stdout.read()
        wait_until(
            lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started),
            20,
            "every process of the cluster to exit",
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
