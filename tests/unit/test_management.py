"""The management API over the fake client: listing pages, filters, deleting."""

from __future__ import annotations

import math

import pytest
import trio

from actors import SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory, text_reply
from app._settings import Settings
from app.http._app import create_app

BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path)


async def start(client, *sessions: str) -> None:
    for session in sessions:
        response = await client.post("/v1/messages", json=BODY, headers={"X-Session-ID": session})
        assert response.status_code == 200


async def test_sessions_are_listed_in_pages_oldest_first(tmp_path, settings, autojump_clock):
    """limit and after_id walk the list in creation order; has_more says when to stop."""
    async with open_supervisor(
        SupervisorConfig(workspace_root=tmp_path), ScriptedClientFactory()
    ) as sup:
        client = create_app(sup, settings).test_client()
        for session in ("s1", "s2", "s3"):
            await start(client, session)
            await trio.sleep(1)
        first = await (await client.get("/v1/sessions?limit=2")).get_json()
        assert [s["id"] for s in first["data"]] == ["s1", "s2"]
        assert first["has_more"] is True
        assert first["last_id"] == "s2"
        rest = await (await client.get("/v1/sessions?limit=2&after_id=s2")).get_json()
        assert [s["id"] for s in rest["data"]] == ["s3"]
        assert rest["has_more"] is False


async def test_sessions_can_be_filtered_by_state(tmp_path, settings, autojump_clock):
    """state=busy lists only sessions running a turn; bad filters are 400s."""
    factory = ScriptedClientFactory(
        script=lambda p, h: text_reply("x", first_delay=math.inf if p == "long" else 0)
    )
    config = SupervisorConfig(workspace_root=tmp_path)
    async with open_supervisor(config, factory) as sup, trio.open_nursery() as nursery:
        client = create_app(sup, settings).test_client()
        await start(client, "idle-one")
        long = {**BODY, "messages": [{"role": "user", "content": "long"}]}
        nursery.start_soon(
            lambda: client.post("/v1/messages", json=long, headers={"X-Session-ID": "busy-one"})
        )
        await trio.testing.wait_all_tasks_blocked()
        busy = await (await client.get("/v1/sessions?state=busy")).get_json()
        assert [s["id"] for s in busy["data"]] == ["busy-one"]
        live = await (await client.get("/v1/sessions?state=live")).get_json()
        assert {s["id"] for s in live["data"]} == {"idle-one", "busy-one"}
        for query in ("state=sleepy", "limit=0", "limit=x", "after_id=nobody"):
            response = await client.get(f"/v1/sessions?{query}")
            assert response.status_code == 400, query
            assert (await response.get_json())["error"]["type"] == "invalid_request_error"
        nursery.cancel_scope.cancel()


async def test_deleting_a_session_closes_it_and_forgets_it(tmp_path, settings, autojump_clock):
    """DELETE fails its running turn, closes its client, removes its workspace; the id
    then starts a new conversation; a second DELETE is a 404."""
    factory = ScriptedClientFactory()
    async with open_supervisor(SupervisorConfig(workspace_root=tmp_path), factory) as sup:
        client = create_app(sup, settings).test_client()
        await start(client, "doomed")
        workspace = factory.specs[0].cwd
        assert workspace.is_dir()
        response = await client.delete("/v1/sessions/doomed")
        assert response.status_code == 200
        assert (await response.get_json())["type"] == "session_deleted"
        assert factory.live == 0
        assert not workspace.exists()
        assert (await client.get("/v1/sessions/doomed")).status_code == 404
        assert (await client.delete("/v1/sessions/doomed")).status_code == 404
        await start(client, "doomed")
        assert factory.specs[-1].resume is None
