"""End to end: the `ask` permission mode over WebSocket, with the real CLI."""

from __future__ import annotations

import pytest
import trio

from app.client._ws_client import open_session_client

from .conftest import SHORT_TIMEOUTS, start_server, stop_server

pytestmark = pytest.mark.e2e


async def next_of(client, *kinds: str) -> dict:
    """The next frame of one of ``kinds`` (others are skipped)."""
    while (frame := await client.receive())["type"] not in kinds:
        pass
    return frame


async def turn_asking(client, path) -> dict:
    """Send a turn that makes Claude Code Read ``path`` (outside its workspace, so it
    must ask); return the permission request."""
    await client.send_turn(f'read it [[tool=Read:{{"file_path": "{path}"}}]]')
    return await next_of(client, "permission_request", "turn_failed")


async def test_ask_mode_allows_an_approved_tool_call_and_denies_on_timeout(tmp_path):
    """With permission_mode=ask, Claude Code's question reaches the session's WebSocket
    client; an approval lets the tool run, and no answer within permission_timeout_s
    denies it."""
    secret = tmp_path / "outside.txt"
    secret.write_text("approved content")
    env = {
        **SHORT_TIMEOUTS,
        "CCACTORS_PERMISSION_MODE": "ask",
        "CCACTORS_PERMISSION_TIMEOUT_S": "2",
        "CCACTORS_WARM_POOL_SIZE": "0",
    }
    server = await trio.to_thread.run_sync(
        lambda: start_server(tmp_path / "state", tmp_path / "server.log", env=env)
    )
    try:
        with trio.fail_after(90):
            async with open_session_client(server.url, "asker") as client:
                request = await turn_asking(client, secret)
                assert request["type"] == "permission_request"
                assert request["tool_name"] == "Read"
                assert request["input"] == {"file_path": str(secret)}
                await client.answer_permission(request["request_id"], allow=True)
                assert (await next_of(client, "permission_result"))["accepted"] is True
                text = ""
                while (frame := await next_of(client, "text_delta", "turn_completed"))[
                    "type"
                ] == "text_delta":
                    text += frame["text"]
                assert text.startswith("tool result:")
                assert "approved content" in text

                request = await turn_asking(client, secret)
                assert request["type"] == "permission_request"
                started = trio.current_time()
                text = ""
                while (frame := await next_of(client, "text_delta", "turn_completed"))[
                    "type"
                ] == "text_delta":
                    text += frame["text"]
                assert trio.current_time() - started >= 2
                assert text.startswith("tool error:")
                assert "approved content" not in text
    finally:
        assert await trio.to_thread.run_sync(stop_server, server) == 0
