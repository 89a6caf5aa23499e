"""A whole cluster on one machine (``ccactors cluster``, ``just cluster``): a throw-away
PostgreSQL, ``n`` ccactors nodes in offline mode on loopback ports, and HAProxy in front.

For trying the cluster out and for its end-to-end tests; every part is a real process
(the nodes are ``python -m app serve``), stopped at the end: the nodes with SIGTERM
(they drain: running turns finish, leases are released), then HAProxy and PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from ._haproxy import haproxy_config
from ._postgres import free_port, throwaway_postgres

# Seconds a node or HAProxy gets to answer after it is started.
START_TIMEOUT_S = 60.0


class MissingToolError(RuntimeError):
    """HAProxy (or PostgreSQL) is not installed; the message names the Debian package."""


@dataclass
class LocalNode:
    """One node: its id, URL, process and log file."""

    id: str
    url: str
    process: trio.Process
    log_path: Path

    def signal(self, signum: int) -> None:
        """Send ``signum`` (SIGKILL, SIGTERM, SIGSTOP, SIGCONT) to the node's process."""
        self.process.send_signal(signum)


@dataclass
class LocalCluster:
    """A running local cluster (``open_local_cluster``)."""

    url: str  # HAProxy's frontend
    database_url: str
    nodes: list[LocalNode] = field(default_factory=list)
    directory: Path = Path()


async def wait_until_up(url: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``url`` until it answers 200.

    Raises:
        TimeoutError: it did not within ``timeout_s`` seconds.
    """
    async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:g} s")


@asynccontextmanager
async def open_local_cluster(
    nodes: int = 3,
    *,
    port: int = 8765,
    directory: Path | None = None,
    node_env: dict[str, str] | None = None,
    quiet: bool = True,
) -> AsyncIterator[LocalCluster]:
    """Start PostgreSQL, ``nodes`` offline nodes and HAProxy on ``127.0.0.1:port``
    (0: a free port); yield once all answer; stop everything when the block is left
    (nodes first, with SIGTERM so that they drain).

    Args:
        directory: where the nodes' state directories, logs and HAProxy's configuration
            go (default: a temporary directory, removed afterwards).
        node_env: extra ``CCACTORS_*`` settings for every node.
        quiet: nodes log to ``<directory>/<node id>.log`` instead of this terminal.

    Raises:
        MissingToolError: ``haproxy`` (Debian package ``haproxy``) or PostgreSQL is
            missing.
        TimeoutError: a part did not come up within ``START_TIMEOUT_S``.
    """
    haproxy = shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if haproxy is None:
        raise MissingToolError("haproxy is not installed (Debian: apt-get install haproxy)")
    async with AsyncExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ccc-")))
        database_url = await stack.enter_async_context(throwaway_postgres())
        port = port or free_port()
        cluster = LocalCluster(f"http://127.0.0.1:{port}", database_url, directory=directory)
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)  # runs first: every process is stopped
        for number in range(1, nodes + 1):
            node = await _start_node(
                nursery, f"node{number}", directory, database_url, node_env, quiet
            )
            cluster.nodes.append(node)
        with trio.fail_after(START_TIMEOUT_S):
            for node in cluster.nodes:
                await wait_until_up(f"{node.url}/health")
        config = directory / "haproxy.cfg"
        config.write_text(
            haproxy_config(
                f"127.0.0.1:{port}", [(n.id, n.url.removeprefix("http://")) for n in cluster.nodes]
            )
        )
        await nursery.start(_run, [haproxy, "-W", "-db", "-f", str(config)], None, quiet)
        await wait_until_up(f"{cluster.url}/health")
        yield cluster


async def _start_node(
    nursery: trio.Nursery,
    node_id: str,
    directory: Path,
    database_url: str,
    node_env: dict[str, str] | None,
    quiet: bool,
) -> LocalNode:
    node_port = free_port()
    env = {
        **os.environ,
        **(node_env or {}),
        "CCACTORS_DATABASE_URL": database_url,
        "CCACTORS_NODE_ID": node_id,
    }
    argv = [sys.executable, "-m", "app", "serve", "--offline", "--port", str(node_port)]
    argv += ["--state-dir", str(directory / node_id)]
    log_path = directory / f"{node_id}.log"
    process = await nursery.start(_run, argv, env, quiet, log_path)
    return LocalNode(node_id, f"http://127.0.0.1:{node_port}", process, log_path)


async def _run(
    argv: list[str],
    env: dict[str, str] | None,
    quiet: bool,
    log_path: Path | None = None,
    *,
    task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one process until cancelled; then SIGTERM, and SIGKILL after 20 s."""
    # A log file opened once per process: not worth a thread.
    output = open(log_path, "ab") if quiet and log_path else None  # noqa: SIM115, ASYNC230
    try:
        process = await trio.lowlevel.open_process(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output or (subprocess.DEVNULL if quiet else None),
            stderr=output or (subprocess.DEVNULL if quiet else None),
        )
        task_status.started(process)
        try:
            await process.wait()
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGCONT)  # a stopped node could not drain
                    process.terminate()
                    with trio.move_on_after(20):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
    finally:
        if output is not None:
            output.close()
