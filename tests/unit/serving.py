"""The app served on real sockets for unit tests, with the scripted fake client."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import hypercorn.trio
import trio
from quart.testing import QuartClient

from actors import SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory
from app._server import hypercorn_config
from app._settings import Settings
from app.http._app import create_app


@asynccontextmanager
async def serving(settings: Settings, factory: ScriptedClientFactory) -> AsyncIterator[str]:
    """The app on hypercorn, configured as ``serve`` configures it, at a free port;
    yields its base URL. Leaving the block stops the server and every session."""
    async with open_supervisor(settings.supervisor_config(), factory) as supervisor:
        config = hypercorn_config(settings)
        config.graceful_timeout = 0.5
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                hypercorn.trio.serve, create_app(supervisor, settings), config
            )
            binds = await nursery.start(serve)
            yield binds[0]
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_client(
    tmp_path: Path,
    settings: Settings | None = None,
    factory: ScriptedClientFactory | None = None,
    **config: Any,
) -> AsyncIterator[QuartClient]:
    """A quart test client of ``create_app`` (``settings``, by default the defaults with
    ``tmp_path`` as state) over a supervisor with ``factory`` and a ``SupervisorConfig``
    of ``config`` (no warm pool unless asked)."""
    settings = settings or Settings(state_dir=tmp_path)
    supervisor_config = SupervisorConfig(workspace_root=tmp_path, **config)
    async with open_supervisor(supervisor_config, factory or ScriptedClientFactory()) as sup:
        yield create_app(sup, settings).test_client()
