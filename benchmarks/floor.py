"""The HTTP floor: what the stack ccactors is built on costs a turn when it does no work.

``python -m benchmarks.floor`` serves one route, ``POST /v1/messages``, with quart-trio
on hypercorn (ccactors' hypercorn configuration) in its own process, as ccactors runs.
It parses the request's JSON body and streams a five-delta Anthropic reply made of
constant bytes (built once, at import, by ccactors' own SSE encoder), yielded in the
pieces ccactors writes a warm turn in (the head of the stream, the first delta, the
other deltas, the end), so the same socket writes happen.
There is no actor, no CLI and no model: timed with the benchmark's own HTTP client, its
time to the first delta and to the end of the stream is the least any front end on
this stack pays for a turn, beside the direct SDK's. Prints ``serving on <url>``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator
from typing import Any

import hypercorn.trio
import quart
import trio
from quart_trio import QuartTrio

from app._server import hypercorn_config
from app._settings import Settings
from app.wire._sse import encode_sse


def _frame(event: dict[str, Any]) -> bytes:
    return encode_sse(event["type"], event)


def _delta(text: str) -> bytes:
    delta = {"type": "text_delta", "text": text}
    return _frame({"type": "content_block_delta", "index": 0, "delta": delta})


_MESSAGE = {
    "id": "msg_floor",
    "type": "message",
    "role": "assistant",
    "model": "floor",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 0},
}
HEAD = _frame({"type": "message_start", "message": _MESSAGE}) + _frame(
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
)
FIRST = _delta("one ")
REST = b"".join(_delta(word) for word in ("two ", "three ", "four ", "five"))
END = (
    _frame({"type": "content_block_stop", "index": 0})
    + _frame(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 5},
        }
    )
    + _frame({"type": "message_stop"})
)


def create_floor_app() -> QuartTrio:
    """The one-route app: JSON body in, a constant five-delta SSE stream out."""
    app = QuartTrio(__name__)

    @app.post("/v1/messages")
    async def messages() -> quart.Response:
        await quart.request.get_json()

        async def body() -> AsyncIterator[bytes]:
            for piece in (HEAD, FIRST, REST, END):
                yield piece

        return quart.Response(body(), content_type="text/event-stream")

    return app


async def main() -> None:
    config = hypercorn_config(Settings(port=0))
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(hypercorn.trio.serve, create_floor_app(), config)
        )
        print(f"floor: serving on {binds[0]}", flush=True)


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)
