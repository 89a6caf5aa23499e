"""A throw-away PostgreSQL server (``initdb`` + ``postgres`` from the Debian package) in a
temporary directory, on a free loopback port, for ``ccactors cluster`` and the tests.

PostgreSQL refuses to run as root; as root, ``initdb`` and ``postgres`` run as the
``postgres`` system user (which the Debian package creates): the child processes switch
user themselves (``subprocess``'s ``user``/``group``), so the server is our child and
stops on our signal (``runuser`` in between would not pass SIGINT on).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import trio

DEBIAN_BIN = Path("/usr/lib/postgresql")


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server binaries; the message names the Debian package."""


def postgres_bin() -> Path:
    """The directory of ``initdb`` and ``postgres``: on ``PATH``, else the newest under
    ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them off ``PATH``).

    Raises:
        PostgresNotFoundError: neither.
    """
    initdb = shutil.which("initdb")
    if initdb and Path(initdb).with_name("postgres").exists():
        return Path(initdb).parent
    versions = sorted(
        (p for p in DEBIAN_BIN.glob("*/bin/initdb") if p.parent.parent.name.isdigit()),
        key=lambda p: int(p.parent.parent.name),
    )
    if not versions:
        raise PostgresNotFoundError(
            "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        )
    return versions[-1].parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_owner() -> dict[str, Any]:
    """``subprocess`` arguments that run a command as a user PostgreSQL accepts: as
    root, the ``postgres`` user; else ourselves."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": "/"}


@contextmanager
def postgres_server(*, timeout_s: float = 60.0) -> Iterator[str]:
    """Run a fresh PostgreSQL for the block; yields its URL
    (``postgresql://postgres@127.0.0.1:<port>/postgres``, trust authentication,
    listening on 127.0.0.1 only). Everything is removed afterwards.

    Blocking (a few seconds to start; leaving stops it in well under a second: a fast
    shutdown, SIGINT, which also disconnects clients still connected). On Ctrl-C the
    server, in our process group, gets the SIGINT too.

    Raises:
        PostgresNotFoundError: no PostgreSQL binaries.
        RuntimeError: ``initdb`` failed or the server exited at start (with the reason).
        TimeoutError: the server did not accept connections within ``timeout_s``.
    """
    bin_dir = postgres_bin()
    owner = _as_owner()
    with tempfile.TemporaryDirectory(prefix="ccactors-pg-") as tmp:
        root = Path(tmp)
        data, sockets = root / "data", root / "run"
        sockets.mkdir()
        if owner:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(sockets, "postgres", "postgres")
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        done = subprocess.run(
            [*initdb, "--no-sync", "-E", "UTF8", "--locale=C"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            **owner,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip()}")
        port = free_port()
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(sockets),
            "max_connections": "200",
            "fsync": "off",  # throw-away data: durability is not wanted, speed is
            "synchronous_commit": "off",
        }
        settings = [arg for name, value in options.items() for arg in ("-c", f"{name}={value}")]
        with (root / "server.log").open("wb") as log_file:  # the child keeps its own copy
            server = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), *settings],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                **owner,
            )
        try:
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            _wait_ready(url, server, timeout_s, root / "server.log")
            yield url
        finally:
            server.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_ready(url: str, server: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    end = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if server.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(
                    f"PostgreSQL exited at start (code {server.returncode}): {' / '.join(tail)}"
                ) from None
            if time.monotonic() > end:
                raise TimeoutError(
                    f"PostgreSQL did not accept connections within {timeout_s} s"
                ) from None
            time.sleep(0.1)


@asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[str]:
    """``postgres_server`` for Trio code: started and stopped in a worker thread."""
    context = postgres_server()
    url = await trio.to_thread.run_sync(context.__enter__)
    try:
        yield url
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(context.__exit__, None, None, None)
