"""The bare proxy: the least any proxy in front of the SDK does, on ccactors' stack.

``python -m benchmarks.bare_proxy <upstream_url> <state_dir>`` connects one
``ClaudeSDKClient`` (the CLI, flags and offline upstream the direct SDK uses:
``Direct.open``) and serves ``POST /v1/messages`` with quart-trio on hypercorn
(ccactors' hypercorn configuration) in its own process, as ccactors runs. A request's
last message (a string) is sent to that one client, and each ``StreamEvent`` the SDK
reads from the CLI is written to the response as an SSE frame, the event passed through
as it came (ccactors' own SSE encoder), until the turn's result.

No actor, no sessions, no auth, no lineage, no store, no translation: one CLI serving
one request at a time (a benchmark's contender, not a server: a client that leaves
mid-turn leaves the rest of that turn to the next request). Where the HTTP floor
(``floor.py``) is the stack's cost with no CLI running beside it, this is a proxy's
whole cost: the SDK's turn, the HTTP stack, and the CLI sharing the machine's cores
with the server and the client while it works.
Stopped by SIGTERM or SIGINT (the CLI is disconnected). Prints ``serving on <url>``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import hypercorn.trio
import quart
import trio
from claude_agent_sdk import ClaudeSDKClient, StreamEvent
from quart_trio import QuartTrio

from app._server import hypercorn_config, wait_for_signal
from app._settings import Settings
from app.wire._sse import encode_sse

from .direct import Direct


def create_bare_proxy_app(client: ClaudeSDKClient) -> QuartTrio:
    """The one-route app relaying turns of the connected ``client``."""
    app = QuartTrio(__name__)
    one_turn_at_a_time = trio.Lock()

    @app.post("/v1/messages")
    async def messages() -> quart.Response:
        body = await quart.request.get_json()
        prompt = body["messages"][-1]["content"]

        async def stream() -> AsyncIterator[bytes]:
            async with one_turn_at_a_time:
                await client.query(prompt)
                async for message in client.receive_response():
                    if isinstance(message, StreamEvent):
                        yield encode_sse(message.event["type"], message.event)

        return quart.Response(stream(), content_type="text/event-stream")

    return app


async def main(upstream_url: str, root: Path) -> None:
    # The direct SDK's client, connected and disconnected by this one task.
    async with Direct.create(root, upstream_url).open() as session, trio.open_nursery() as nursery:
        app = create_bare_proxy_app(session.client)
        serve = functools.partial(hypercorn.trio.serve, app, hypercorn_config(Settings(port=0)))
        binds = await nursery.start(serve)
        print(f"bare proxy: serving on {binds[0]}", flush=True)
        await wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], Path(sys.argv[2]))
