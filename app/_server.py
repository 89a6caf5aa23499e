"""Running the service: supervisor, optional offline upstream and hypercorn in one nursery."""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import hypercorn.config
import hypercorn.trio
import trio

from actors import CliOptions, open_sdk_client, open_supervisor

from ._settings import Settings
from ._state_dir import prepare_state_dir
from .cluster._node import open_node
from .cluster._schema import MIGRATIONS as CLUSTER_MIGRATIONS
from .http._app import create_app
from .offline._upstream import serve_upstream
from .security._environment import confine_environment
from .sessions._lineage_index import LineageIndex
from .sessions._schema import SESSION_MIGRATIONS
from .sessions._store import open_session_store

log = logging.getLogger("ccactors")

OFFLINE_API_KEY = "ccactors-offline-dummy-key"

# Keep every CLI quiet on the network beyond its API calls, and its state in ours. (The
# Agent SDK adds nothing that calls out: its CLI version check reads the CLI's own init
# message, so CLAUDE_AGENT_SDK_SKIP_VERSION_CHECK only silences a log line; with these set,
# the CLI's only requests are POST /v1/messages to ANTHROPIC_BASE_URL.)
CLI_QUIET_ENV = {
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}


def cli_options(settings: Settings, extra_env: dict[str, str]) -> CliOptions:
    """The CLI options every session gets, all from settings.

    Raises:
        CliNotFoundError: no ``claude`` executable was found.
    """
    settings.claude_config_dir.mkdir(parents=True, exist_ok=True)
    return CliOptions(
        cli_path=settings.resolve_cli_path(),
        env={
            **CLI_QUIET_ENV,
            "CLAUDE_CONFIG_DIR": str(settings.claude_config_dir),
            **extra_env,
        },
        tools=tuple(settings.tools),
        allowed_tools=tuple(settings.allowed_tools),
        disallowed_tools=tuple(settings.disallowed_tools),
        # "ask" is ours: the CLI runs in its default mode and asks us (can_use_tool).
        permission_mode=settings.permission_mode.replace("ask", "default"),
        model=settings.model,
        system_prompt=settings.system_prompt,
        append_system_prompt=settings.append_system_prompt,
        close_timeout_s=settings.cli_close_timeout_s,
    )


def hypercorn_config(settings: Settings) -> hypercorn.config.Config:
    """hypercorn's configuration from our settings: the bind address, logging, and the
    limits on slow or silent clients. Not a checkpoint.

    * ``keep_alive_timeout``: a connection that sends no complete request head within
      ``keep_alive_timeout_s`` of opening (or of its previous response) is closed; this
      also cuts a request head trickled byte by byte (slowloris).
    * ``websocket_ping_interval``: a protocol ping every ``ws_ping_interval_s`` on each
      WebSocket, so idle proxies keep the connection and dead peers are noticed.
    * ``read_timeout`` stays unset: hypercorn applies it to every read of a connection,
      so it would cut SSE streams and WebSockets whose client is quiet. A trickled body
      is bounded by the app instead (``body_read_timeout_s``, 408).
    """
    config = hypercorn.config.Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None  # the app logs each request, with its ids
    config.errorlog = logging.getLogger("ccactors.http")
    config.graceful_timeout = 1.0  # turns had shutdown_grace_s already
    config.keep_alive_timeout = settings.keep_alive_timeout_s
    config.websocket_ping_interval = settings.ws_ping_interval_s
    return config


async def wait_for_signal() -> signal.Signals:
    """Return the first SIGINT or SIGTERM received, once it is."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            return signal.Signals(signum)
    raise AssertionError("unreachable: a signal receiver never ends")  # pragma: no cover


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] = wait_for_signal,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ccactors until ``shutdown_trigger`` returns, then stop every session: new
    turns are refused, running ones get ``shutdown_grace_s`` to finish, then the rest
    are interrupted and every CLI process is closed.

    Follows the nursery start protocol: ``started`` receives the base URL actually bound
    (so ``port=0`` works). With ``settings.offline``, an offline upstream is started in
    the same nursery and every CLI is pointed at it with a dummy key.

    Raises:
        CliNotFoundError: no ``claude`` executable (checked before anything starts).
        InsecureBindError: a non-loopback host without API keys, not explicitly allowed.

    On shutdown (or cancellation) the HTTP server stops, then every session's CLI process
    is closed before this returns.
    """
    settings.check_exposure()
    prepare_state_dir(settings.state_dir)
    # Every CLI inherits this process's environment: keep only what Claude Code needs.
    confine_environment(settings.secrets())
    extra_env: dict[str, str] = {}
    options = cli_options(settings, extra_env)
    log.info("Claude Code CLI: %s", options.cli_path)
    async with trio.open_nursery() as nursery:
        if settings.offline:
            upstream = await nursery.start(serve_upstream, "127.0.0.1", 0)
            extra_env.update(
                ANTHROPIC_BASE_URL=upstream,
                ANTHROPIC_API_KEY=OFFLINE_API_KEY,
                # The offline upstream's errors are deliberate: report them, don't retry.
                CLAUDE_CODE_MAX_RETRIES="0",
            )
            options = cli_options(settings, extra_env)
            log.warning(
                "OFFLINE mode: every Claude Code CLI talks to the built-in offline upstream at "
                "%s, not to Anthropic. Replies are canned (echo and test directives).",
                upstream,
            )
        async with AsyncExitStack() as stack:
            node = None
            if settings.database_url is not None:
                node = await stack.enter_async_context(
                    open_node(
                        settings.database_url.get_secret_value(),
                        node_id=settings.node_id,
                        lease_ttl_s=settings.lease_ttl_s,
                        claim_timeout_s=settings.claim_timeout_s,
                    )
                )
                options = dataclasses.replace(options, session_store=node.transcripts.for_cli)
            factory = functools.partial(open_sdk_client, options)
            store = await stack.enter_async_context(
                open_session_store(
                    settings.state_dir / "sessions.sqlite3",
                    database_url=settings.database_url and settings.database_url.get_secret_value(),
                    fence=None if node is None else node.ownership,
                    migrations=SESSION_MIGRATIONS if node is None else CLUSTER_MIGRATIONS,
                )
            )
            supervisor = await stack.enter_async_context(
                open_supervisor(
                    settings.supervisor_config(),
                    factory,
                    directory=store,
                    ownership=None if node is None else node.ownership,
                )
            )
            supervisor.add_observer(store)
            if node is not None:
                supervisor.add_observer(node.ownership)
                await node.serve(supervisor)
            lineage = LineageIndex(store, shared=node is not None)
            lineage.load(*await store.lineage())  # conversations survive a restart

            async def drain_then_stop() -> None:
                await shutdown_trigger()
                supervisor.close()  # new turns get 503 from now on
                with trio.move_on_after(settings.shutdown_grace_s):
                    await supervisor.wait_idle()
                log.info("stopping: running turns are interrupted, every CLI closed")

            config = hypercorn_config(settings)
            async with trio.open_nursery() as http:
                binds = await http.start(
                    functools.partial(
                        hypercorn.trio.serve,
                        create_app(supervisor, settings, store=store, lineage=lineage, node=node),
                        config,
                        shutdown_trigger=drain_then_stop,
                    )
                )
                task_status.started(binds[0])
        nursery.cancel_scope.cancel()  # the offline upstream, if any
