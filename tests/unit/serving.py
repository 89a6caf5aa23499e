"""The app served on real sockets for unit tests, with the scripted fake client."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import hypercorn.trio
import trio

from actors import open_supervisor
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
