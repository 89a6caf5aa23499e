"""Tenants and slow clients: per-key shares and caps, operator endpoints, WebSocket
limits and idle timeout, and the deadlines on slow or silent HTTP clients.

Over the scripted fake client. Tests of time-outs use real sockets (hypercorn on port
0, configured by ``hypercorn_config``) with short settings and generous hang guards.
"""

from __future__ import annotations

import itertools
import json

import httpx
import pytest
import trio
import wsproto
import wsproto.events
from trio_websocket import ConnectionClosed

from actors import open_supervisor
from actors.testing import ScriptedClientFactory, text_reply
from app._settings import Settings
from app.client._ws_client import SessionRejectedError, open_session_client
from app.http._app import create_app

from .serving import serving

GUARD_S = 20
BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
ALICE = {"x-api-key": "alice-key"}
BOB = {"x-api-key": "bob-key"}
OPERATOR = {"x-api-key": "ops-key"}


def keyed(tmp_path, **overrides) -> Settings:
    """Settings with two API keys and one operator key, listening on a free port."""
    return Settings(
        state_dir=tmp_path,
        port=0,
        api_keys=["alice-key", "bob-key"],
        admin_api_keys=["ops-key"],
        **overrides,
    )


async def until_final(client) -> list[dict]:
    """Frames up to and including the next turn_completed or turn_failed."""
    frames = [await client.receive()]
    while frames[-1]["type"] not in ("turn_completed", "turn_failed"):
        frames.append(await client.receive())
    return frames


# -- The per-key share of live CLIs ---------------------------------------------------


def test_live_share_is_half_the_live_slots_by_default_and_off_without_keys(tmp_path):
    """With API keys, a key's share is max_live_sessions_per_key, by default half of
    max_live_sessions (at least 1); with auth off there is one principal, so no share
    (it would only cut capacity)."""
    assert (
        keyed(tmp_path, max_live_sessions=16).supervisor_config().max_live_sessions_per_principal
        == 8
    )
    assert keyed(tmp_path, max_live_sessions=1).live_share() == 1
    assert keyed(tmp_path, max_live_sessions_per_key=3).live_share() == 3
    assert keyed(tmp_path, max_live_sessions=2, max_live_sessions_per_key=5).live_share() == 2
    keyless = Settings(state_dir=tmp_path, max_live_sessions_per_key=3)
    assert keyless.supervisor_config().max_live_sessions_per_principal is None


async def test_key_at_its_live_share_gets_429_while_another_key_gets_a_session(
    tmp_path, autojump_clock
):
    """Over HTTP: a key whose share of live CLIs is busy gets 429 (rate_limit_error)
    with Retry-After at once, though slots are free; another key is served."""
    settings = keyed(tmp_path, max_live_sessions=4, warm_pool_size=0)
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
        t0 = trio.current_time()
        refused = await post(ALICE, "a3")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        error = (await refused.get_json())["error"]
        assert error["type"] == "rate_limit_error"
        assert "live sessions" in error["message"]
        assert trio.current_time() == t0
        assert (await post(BOB, "b1")).status_code == 200
        assert trio.current_time() - t0 == 8


# -- Operator endpoints ---------------------------------------------------------------


async def test_stats_and_metrics_need_an_operator_key_once_keys_are_configured(tmp_path):
    """With keys: /v1/stats and /metrics answer 401 without a valid key, 403
    (permission_error) for an ordinary key, 200 for an operator key; an operator key
    is an API key too; /health answers anyone and reveals no counts."""
    async with open_supervisor(keyed(tmp_path).supervisor_config(), ScriptedClientFactory()) as sup:
        client = create_app(sup, keyed(tmp_path)).test_client()
        for path in ("/v1/stats", "/metrics"):
            assert (await client.get(path)).status_code == 401
            assert (await client.get(path, headers={"x-api-key": "nope"})).status_code == 401
            forbidden = await client.get(path, headers=ALICE)
            assert forbidden.status_code == 403
            assert (await forbidden.get_json())["error"]["type"] == "permission_error"
            assert (await client.get(path, headers=OPERATOR)).status_code == 200
        assert (await client.post("/v1/messages", json=BODY, headers=OPERATOR)).status_code == 200
        health = await client.get("/health")
        assert await health.get_json() == {"status": "ok"}


async def test_without_keys_stats_and_metrics_stay_open(tmp_path):
    """With auth off (loopback), /v1/stats and /metrics need no key; /health still
    shows no counts."""
    settings = Settings(state_dir=tmp_path)
    async with open_supervisor(settings.supervisor_config(), ScriptedClientFactory()) as sup:
        client = create_app(sup, settings).test_client()
        assert (await client.get("/v1/stats")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert await (await client.get("/health")).get_json() == {"status": "ok"}


# -- Per-key caps on long-lived connections -------------------------------------------


async def test_event_listeners_beyond_the_keys_cap_get_429_and_the_count_is_given_back(
    tmp_path,
):
    """A key with max_listeners_per_key /events streams open gets 429 in Anthropic's
    format with Retry-After; another key is not affected; once a stream closes, its
    key may open another."""
    settings = keyed(tmp_path, max_listeners_per_key=1)
    with trio.fail_after(GUARD_S):
        async with (
            serving(settings, ScriptedClientFactory()) as url,
            httpx.AsyncClient(base_url=url, timeout=GUARD_S) as http,
        ):
            for headers in (ALICE, BOB):
                sent = await http.post(
                    "/v1/messages", json=BODY, headers={**headers, "X-Session-ID": "s"}
                )
                assert sent.status_code == 200
            async with http.stream("GET", "/v1/sessions/s/events", headers=ALICE) as first:
                assert first.status_code == 200
                refused = await http.get("/v1/sessions/s/events", headers=ALICE)
                assert refused.status_code == 429
                assert int(refused.headers["Retry-After"]) > 0
                assert refused.json()["error"]["type"] == "rate_limit_error"
                async with http.stream("GET", "/v1/sessions/s/events", headers=BOB) as bobs:
                    assert bobs.status_code == 200
            # The server notices the closed stream when it next writes or reads; poll.
            while True:
                async with http.stream("GET", "/v1/sessions/s/events", headers=ALICE) as again:
                    if again.status_code == 200:
                        break
                await trio.sleep(0.05)


async def test_websockets_beyond_the_keys_cap_are_refused_with_1008_and_given_back(tmp_path):
    """A key with max_websockets_per_key connections open gets an error frame
    (rate_limit_error, retry_after_s) and close 1008 for one more; another key is not
    affected; closing a connection gives its place back."""
    settings = keyed(tmp_path, max_websockets_per_key=2)
    with trio.fail_after(GUARD_S):
        async with serving(settings, ScriptedClientFactory()) as url:
            async with (
                open_session_client(url, "a", api_key="alice-key"),
                open_session_client(url, "b", api_key="alice-key"),
            ):
                with pytest.raises(SessionRejectedError) as caught:
                    async with open_session_client(url, "c", api_key="alice-key"):
                        pass
                assert caught.value.code == 1008
                assert "2 open WebSockets" in caught.value.message
                async with open_session_client(url, "c", api_key="bob-key"):
                    pass
            async with open_session_client(url, "c", api_key="alice-key") as client:
                await client.send_turn("hi")
                assert (await until_final(client))[-1]["type"] == "turn_completed"


# -- WebSocket turns obey the HTTP limits ---------------------------------------------


async def test_websocket_turns_obey_prompt_size_and_per_key_turn_limits(tmp_path):
    """A WebSocket turn over max_prompt_chars gets invalid_request_error, and one beyond
    the key's max_turns_per_key rate_limit_error with retry_after_s; the connection
    stays open and its next turn runs."""
    settings = keyed(tmp_path, max_prompt_chars=10, max_turns_per_key=1)
    slow = ScriptedClientFactory(
        script=lambda p, h: text_reply("x", first_delay=0.5 if p == "slow" else 0)
    )
    with trio.fail_after(GUARD_S):
        async with (
            serving(settings, slow) as url,
            open_session_client(url, "one", api_key="alice-key") as one,
            open_session_client(url, "two", api_key="alice-key") as two,
        ):
            await two.send_turn("x" * 11, id="long")
            error = await two.receive()
            assert error["id"] == "long"
            assert error["error"]["type"] == "invalid_request_error"
            assert "at most 10" in error["error"]["message"]
            await one.send_turn("slow")
            assert (await one.receive())["type"] == "turn_accepted"
            await two.send_turn("hi", id="busy")
            refused = await two.receive()
            assert refused["id"] == "busy"
            assert refused["error"]["type"] == "rate_limit_error"
            assert refused["error"]["retry_after_s"] > 0
            assert (await until_final(one))[-1]["type"] == "turn_completed"
            await two.send_turn("hi")
            assert (await until_final(two))[-1]["type"] == "turn_completed"


# -- WebSocket idle timeout -----------------------------------------------------------


async def test_server_pings_each_websocket_every_ping_interval(tmp_path):
    """hypercorn, configured from ws_ping_interval_s, sends protocol pings: a bare
    wsproto client (which answers nothing by itself) sees them that often."""
    settings = Settings(state_dir=tmp_path, port=0, ws_ping_interval_s=0.2)
    with trio.fail_after(GUARD_S):
        async with serving(settings, ScriptedClientFactory()) as url:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
                request = wsproto.events.Request(host=host, target="/v1/sessions/p/ws")
                await stream.send_all(ws.send(request))
                pings: list[float] = []
                while len(pings) < 3:
                    ws.receive_data(await stream.receive_some())
                    for event in ws.events():
                        if isinstance(event, wsproto.events.Ping):
                            pings.append(trio.current_time())
                            await stream.send_all(ws.send(event.response()))
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    assert all(0.2 <= gap < 0.2 + 1.0 for gap in gaps), gaps


async def test_quiet_websocket_is_closed_after_the_idle_timeout_but_not_during_its_turn(
    tmp_path,
):
    """A connection with no client message for ws_idle_timeout_s is closed with code
    1000 and reason "idle timeout"; a turn of its own that runs longer than that keeps
    it open, and the idle time counts from the turn's end."""
    settings = Settings(state_dir=tmp_path, port=0, ws_idle_timeout_s=0.5, ws_ping_interval_s=0.1)
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=1.0))
    with trio.fail_after(GUARD_S):
        async with serving(settings, factory) as url:
            async with open_session_client(url, "quiet") as client:
                t0 = trio.current_time()
                await client.send_turn("long")
                assert (await until_final(client))[-1]["type"] == "turn_completed"
                ended = trio.current_time()
                assert ended - t0 >= 1.0  # longer than the idle timeout, still open
                with pytest.raises(ConnectionClosed) as caught:
                    await client.receive()
                closed = trio.current_time()
            assert (caught.value.reason.code, caught.value.reason.reason) == (1000, "idle timeout")
            # From the turn's end on the server, which the client sees a little later.
    assert 0.5 - 0.1 <= closed - ended < 0.5 + 2.0


# -- Slow and silent HTTP clients ------------------------------------------------------


async def test_trickled_body_gets_408_and_the_connection_is_cut_within_the_deadline(
    tmp_path,
):
    """A client that sends its body one byte every 0.2 s (never finishing) gets 408
    (timeout_error) body_read_timeout_s after its head, and the server then closes the
    connection although the client goes on trickling."""
    settings = Settings(state_dir=tmp_path, port=0, body_read_timeout_s=1.0)
    with trio.fail_after(GUARD_S):
        async with serving(settings, ScriptedClientFactory()) as url:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream, trio.open_nursery() as nursery:
                head = (
                    "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                )
                await stream.send_all(head.encode())
                t0 = trio.current_time()

                async def trickle() -> None:
                    for _ in range(1000):
                        await trio.sleep(0.2)
                        try:
                            await stream.send_all(b" ")
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            return

                nursery.start_soon(trickle)
                reply = b""
                while data := await stream.receive_some():
                    reply += data
                closed = trio.current_time() - t0
                nursery.cancel_scope.cancel()
    status, _, rest = reply.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 "
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["type"] == "timeout_error"
    assert 1.0 <= closed < 1.0 + 2.0


async def test_silent_connection_is_closed_after_the_keep_alive_timeout(tmp_path):
    """A connection that sends nothing (or a request head too slowly) is closed by the
    server keep_alive_timeout_s after it opened."""
    settings = Settings(state_dir=tmp_path, port=0, keep_alive_timeout_s=0.5)
    with trio.fail_after(GUARD_S):
        async with serving(settings, ScriptedClientFactory()) as url:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            for first_bytes in (b"", b"GET / HTTP/1.1\r\n"):
                stream = await trio.open_tcp_stream(host, int(port))
                async with stream:
                    t0 = trio.current_time()
                    await stream.send_all(first_bytes)
                    assert await stream.receive_some() == b""
                    closed = trio.current_time() - t0
                assert 0.5 <= closed < 0.5 + 2.0
