"""The offline upstream's replies: one ``Reply`` streamed as Anthropic's SSE events
(text deltas with their delays and stalls, or one ``tool_use`` block)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from ..wire._sse import encode_sse
from ._directives import Directives, JSONObject
from ._reading import estimate_tokens, split_text


@dataclass(frozen=True)
class Reply:
    """Everything needed to answer one ``/v1/messages`` request."""

    model: str
    text: str
    directives: Directives
    input_tokens: int
    stream: bool
    tool_call: tuple[str, dict[str, Any]] | None = None  # answer with this tool_use

    def message(self, content: list[JSONObject], stop_reason: str | None) -> JSONObject:
        """The Message object with ``content``; ``stop_reason`` is None while streaming."""
        return {
            "id": f"msg_{uuid.uuid4().hex}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        }

    @property
    def output_tokens(self) -> int:
        return estimate_tokens(len(self.text))


def _frame(event: str, **fields: Any) -> bytes:
    return encode_sse(event, {"type": event, **fields})


def tool_use_block(reply: Reply) -> JSONObject:
    assert reply.tool_call is not None
    name, tool_input = reply.tool_call
    return {
        "type": "tool_use",
        "id": f"toolu_{uuid.uuid4().hex[:24]}",
        "name": name,
        "input": tool_input,
    }


async def _stream_tool_use(reply: Reply) -> AsyncIterator[bytes]:
    """A streamed reply that is one ``tool_use`` block (stop_reason ``tool_use``)."""
    block = tool_use_block(reply)
    yield _frame("message_start", message=reply.message([], None))
    yield _frame("content_block_start", index=0, content_block={**block, "input": {}})
    delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    yield _frame("content_block_delta", index=0, delta=delta)
    yield _frame("content_block_stop", index=0)
    yield _frame(
        "message_delta",
        delta={"stop_reason": "tool_use", "stop_sequence": None},
        usage={"output_tokens": reply.output_tokens},
    )
    yield _frame("message_stop")


async def stream_reply(reply: Reply) -> AsyncIterator[bytes]:
    """Anthropic's streaming events for ``reply``; cancelled when the client goes away."""
    directives = reply.directives
    await trio.sleep(directives.delay_first)
    if reply.tool_call is not None:
        async for frame in _stream_tool_use(reply):
            yield frame
        return
    yield _frame("message_start", message=reply.message([], None))
    yield _frame("ping")
    yield _frame("content_block_start", index=0, content_block={"type": "text", "text": ""})
    for number, piece in enumerate(split_text(reply.text, directives.delta_count)):
        if number == directives.stall_after:
            await trio.sleep_forever()
        if number:
            await trio.sleep(directives.chunk_delay)
        yield _frame("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    if directives.stall_after is not None:
        await trio.sleep_forever()
    yield _frame("content_block_stop", index=0)
    yield _frame(
        "message_delta",
        delta={"stop_reason": "end_turn", "stop_sequence": None},
        usage={"output_tokens": reply.output_tokens},
    )
    yield _frame("message_stop")
