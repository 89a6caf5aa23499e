"""End to end: WebSocket sessions against ``ccactors serve --offline``, through the real
Claude Code CLI, with the project's trio-websocket client."""

from __future__ import annotations

import pytest
import trio

from app.client._ws_client import SessionClient, open_session_client

pytestmark = pytest.mark.e2e

GUARD_S = 60  # a CLI start on a loaded machine, and then some


async def until_final(client: SessionClient) -> list[dict]:
    """Frames up to and including the next turn_completed or turn_failed."""
    frames = [await client.receive()]
    while frames[-1]["type"] not in ("turn_completed", "turn_failed"):
        frames.append(await client.receive())
    return frames


def text_of(frames: list[dict]) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "text_delta")


async def test_two_websocket_clients_share_one_session(server):
    """Two clients on one session both receive each turn, whichever sent it, with the
    same turn id and text, each event once; the conversation goes on across senders."""
    with trio.fail_after(GUARD_S):
        async with (
            open_session_client(server.url, "e2e-ws-shared") as a,
            open_session_client(server.url, "e2e-ws-shared") as b,
        ):
            await a.send_turn("hello from a [[chunks=3]]")
            accepted = await a.receive()
            seen_a, seen_b = await until_final(a), await until_final(b)
            await b.send_turn("[[count]]")
            assert (await b.receive())["type"] == "turn_accepted"
            counted_a, counted_b = await until_final(a), await until_final(b)
    assert accepted["type"] == "turn_accepted"
    assert seen_a == seen_b
    assert {f["turn_id"] for f in seen_a} == {accepted["turn_id"]}
    assert [f["type"] for f in seen_a] == ["turn_started"] + ["text_delta"] * 3 + ["turn_completed"]
    assert text_of(seen_a) == "echo: hello from a [[chunks=3]]"
    assert seen_a[-1]["usage"]["output_tokens"] > 0
    assert counted_a == counted_b
    assert text_of(counted_a) == "count=1"  # the second turn of the same conversation


async def test_interrupt_message_stops_a_long_turn_and_the_session_answers_the_next(server):
    """An interrupt message stops a slowly streaming turn (turn_failed, interrupted) long
    before its end, and the session then answers its next turn with its own prompt."""
    with trio.fail_after(GUARD_S):
        async with open_session_client(server.url, "e2e-ws-interrupt") as client:
            await client.send_turn("long [[chunks=50]] [[chunk_delay=0.1]]")
            frames = [await client.receive()]
            while frames[-1]["type"] != "text_delta":
                frames.append(await client.receive())
            interrupted_at = trio.current_time()
            await client.interrupt()
            frames += await until_final(client)
            stopped_after = trio.current_time() - interrupted_at
            after = [f async for f in client.stream_turn("after the interrupt")]
    assert {"type": "interrupt_result", "interrupted": True} in frames
    assert frames[-1]["type"] == "turn_failed"
    assert frames[-1]["reason"] == "interrupted"
    assert stopped_after < 3  # the whole answer would take 5 s
    assert after[-1]["type"] == "turn_completed"
    assert text_of(after) == "echo: after the interrupt"
