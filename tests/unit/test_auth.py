"""API keys and tenant isolation, over the fake client (the HTTP and WebSocket layers)."""

from __future__ import annotations

import hashlib

import hypercorn.config
import hypercorn.trio
import pytest
import trio

from actors import SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory, text_reply
from app._settings import InsecureBindError, Settings
from app.client._ws_client import SessionRejectedError, open_session_client
from app.http._app import create_app
from app.security._auth import AuthError, KeyFileError, load_key_hashes, principal_for

BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
ALICE = {"x-api-key": "alice-key"}
BOB = {"Authorization": "Bearer bob-key"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, api_keys=["alice-key", "bob-key"])


@pytest.fixture
async def client(tmp_path, settings):
    config = SupervisorConfig(workspace_root=tmp_path / "w")
    async with open_supervisor(config, ScriptedClientFactory()) as sup:
        yield create_app(sup, settings).test_client()


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "nope"}, {"Authorization": "Bearer"}])
async def test_requests_without_a_valid_key_get_401_in_each_apis_format(client, headers):
    """No key, a wrong key or an empty Bearer: 401, Anthropic JSON on /v1/messages,
    OpenAI JSON on /v1/chat/completions; nothing reaches a session."""
    anthropic = await client.post("/v1/messages", json=BODY, headers=headers)
    assert anthropic.status_code == 401
    assert (await anthropic.get_json())["error"]["type"] == "authentication_error"
    openai_body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    openai = await client.post("/v1/chat/completions", json=openai_body, headers=headers)
    assert openai.status_code == 401
    error = (await openai.get_json())["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert (await client.get("/v1/sessions", headers=headers)).status_code == 401
    assert (await client.get("/metrics", headers=headers)).status_code == 401


async def test_health_answers_without_a_key(client):
    """Liveness probes need no key."""
    assert (await client.get("/health")).status_code == 200


async def test_x_api_key_and_bearer_are_both_accepted(client):
    """Keys are accepted as x-api-key and as Authorization: Bearer."""
    for headers in (ALICE, BOB):
        response = await client.post("/v1/messages", json=BODY, headers=headers)
        assert response.status_code == 200


async def test_another_keys_session_is_as_if_absent(client):
    """A session belongs to the key that created it: another key can neither read,
    list, interrupt, watch nor delete it (404), and the same id under its own key is a
    separate conversation."""
    headers = {**ALICE, "X-Session-ID": "shared-name"}
    assert (await client.post("/v1/messages", json=BODY, headers=headers)).status_code == 200
    for method, path in [
        ("GET", "/v1/sessions/shared-name"),
        ("GET", "/v1/sessions/shared-name/messages"),
        ("GET", "/v1/sessions/shared-name/events"),
        ("POST", "/v1/sessions/shared-name/interrupt"),
        ("DELETE", "/v1/sessions/shared-name"),
    ]:
        response = await client.open(path, method=method, headers=BOB)
        assert response.status_code == 404, (method, path)
        assert (await response.get_json())["error"]["type"] == "not_found_error"
    listed = await (await client.get("/v1/sessions", headers=BOB)).get_json()
    assert listed["data"] == []
    bobs = await client.post(
        "/v1/messages", json=BODY, headers={**BOB, "X-Session-ID": "shared-name"}
    )
    assert (await bobs.get_json())["content"][0]["text"] == "echo: hi #1"
    alices = await client.post("/v1/messages", json=BODY, headers=headers)
    assert (await alices.get_json())["content"][0]["text"] == "echo: hi #2"
    mine = await (await client.get("/v1/sessions", headers=ALICE)).get_json()
    assert [s["id"] for s in mine["data"]] == ["shared-name"]


def test_principals_differ_per_key_and_keys_are_never_stored(tmp_path):
    """The principal is a short digest of the key; a hash file works like the keys."""
    hash_file = tmp_path / "keys"
    hash_file.write_text(f"# team keys\n{hashlib.sha256(b'carol').hexdigest()}\n\n")
    hashes = load_key_hashes(["alice"], hash_file)
    alice = principal_for({"x-api-key": "alice"}, hashes)
    carol = principal_for({"Authorization": "Bearer carol"}, hashes)
    assert alice != carol
    assert "alice" not in alice
    with pytest.raises(AuthError):
        principal_for({"x-api-key": "mallory"}, hashes)
    hash_file.write_text("not-a-hash\n")
    with pytest.raises(KeyFileError, match=":1:"):
        load_key_hashes([], hash_file)


def test_listening_beyond_loopback_needs_keys_or_an_explicit_flag(tmp_path):
    """0.0.0.0 without keys is refused; with keys or --insecure-no-auth it is allowed;
    loopback is always allowed."""
    with pytest.raises(InsecureBindError):
        Settings(state_dir=tmp_path, host="0.0.0.0").check_exposure()
    Settings(state_dir=tmp_path, host="0.0.0.0", api_keys=["k"]).check_exposure()
    Settings(state_dir=tmp_path, host="0.0.0.0", insecure_no_auth=True).check_exposure()
    for host in ("127.0.0.1", "::1", "localhost"):
        Settings(state_dir=tmp_path, host=host).check_exposure()


async def test_websocket_needs_a_key_and_sees_only_its_own_sessions(tmp_path, settings):
    """A WebSocket without a key is refused (close 1008, saying why); with another key,
    the same session id is a different session."""
    config = SupervisorConfig(workspace_root=tmp_path / "w")
    with trio.fail_after(30):
        async with open_supervisor(config, ScriptedClientFactory()) as sup:
            http = hypercorn.config.Config()
            http.bind = ["127.0.0.1:0"]
            http.graceful_timeout = 0.5
            async with trio.open_nursery() as nursery:
                (url,) = await nursery.start(hypercorn.trio.serve, create_app(sup, settings), http)
                with pytest.raises(SessionRejectedError, match="API key"):
                    async with open_session_client(url, "ws-s"):
                        pass
                async with open_session_client(url, "ws-s", api_key="alice-key") as alice:
                    text = await turn_text(alice, "one")
                    assert text == "echo: one #1"
                async with open_session_client(url, "ws-s", api_key="bob-key") as bob:
                    assert await turn_text(bob, "other") == "echo: other #1"
                nursery.cancel_scope.cancel()


async def turn_text(client, content: str) -> str:
    await client.send_turn(content)
    text = ""
    while (event := await client.receive())["type"] not in ("turn_completed", "turn_failed"):
        if event["type"] == "text_delta":
            text += event["text"]
    return text


async def test_per_key_limits_refuse_with_429_and_retry_after(tmp_path, autojump_clock):
    """A key at its limit of concurrent turns, or of sessions, gets 429 + Retry-After;
    another key is not affected."""
    settings = Settings(
        state_dir=tmp_path,
        api_keys=["alice-key", "bob-key"],
        max_turns_per_key=2,
        max_sessions_per_key=3,
    )
    slow = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=8))
    async with (
        open_supervisor(settings.supervisor_config(), slow) as sup,
        trio.open_nursery() as nursery,
    ):
        client = create_app(sup, settings).test_client()

        async def post(headers, session):
            return await client.post(
                "/v1/messages", json=BODY, headers={**headers, "X-Session-ID": session}
            )

        for session in ("a1", "a2"):
            nursery.start_soon(post, ALICE, session)
        await trio.testing.wait_all_tasks_blocked()
        refused = await post(ALICE, "a3")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"]
        assert (await refused.get_json())["error"]["type"] == "rate_limit_error"
        assert (await post(BOB, "b1")).status_code == 200  # Bob has his own limits
        await trio.sleep(10)  # Alice's two turns end
        assert (await post(ALICE, "a3")).status_code == 200
        too_many = await post(ALICE, "a4")  # a1, a2, a3 exist
        assert too_many.status_code == 429
        assert "3 sessions" in (await too_many.get_json())["error"]["message"]
