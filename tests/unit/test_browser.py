"""Requests a web page could make the browser send: refused before anything runs.

Real sockets (hypercorn on port 0, httpx, trio-websocket) and the scripted fake client.
"Nothing ran" means: no session, and the fake client factory was never asked for a CLI.
The real browser doing the same is tests/e2e/test_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anthropic
import httpx
import hypercorn.config
import hypercorn.trio
import openai
import pytest
import trio

from actors import Supervisor, open_supervisor
from actors.testing import ScriptedClientFactory
from app._settings import PROJECT_ROOT, InsecureBindError, Settings
from app.client._ws_client import open_session_client
from app.http._app import create_app
from app.security._origin import Refusal, RequestPolicy

GUARD_S = 10
BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
EVIL = "http://evil.example"
APP = "http://app.example:3000"
NESTED = "[" * 100_000


@dataclass
class Served:
    url: str
    supervisor: Supervisor
    factory: ScriptedClientFactory

    def nothing_ran(self) -> bool:
        return not self.supervisor.sessions() and not self.factory.specs


@asynccontextmanager
async def serving(tmp_path, **settings) -> AsyncIterator[Served]:
    """The app on hypercorn at a free port, with no warm pool (so no CLI is asked for
    until a turn runs)."""
    config = Settings(state_dir=tmp_path, warm_pool_size=0, **settings)
    factory = ScriptedClientFactory()
    async with open_supervisor(config.supervisor_config(), factory) as supervisor:
        http = hypercorn.config.Config()
        http.bind = ["127.0.0.1:0"]
        http.graceful_timeout = 0.5
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(hypercorn.trio.serve, create_app(supervisor, config), http)
            yield Served(url, supervisor, factory)
            nursery.cancel_scope.cancel()


@pytest.fixture
async def served(tmp_path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as served:
        yield served


async def post_text(client: httpx.AsyncClient, path: str, body: object, content_type: str):
    return await client.post(path, content=json.dumps(body), headers={"Content-Type": content_type})


async def test_a_json_body_sent_as_text_plain_is_415_and_runs_nothing(served):
    """What fetch(..., {mode: "no-cors"}) can send: a JSON text as text/plain (or a form).
    Every API answers 415 in its own format; no session is made, no CLI asked for."""
    named = {**BODY, "metadata": {"session_id": "victim"}}
    with trio.fail_after(GUARD_S):
        async with httpx.AsyncClient(base_url=served.url) as client:
            for content_type in ("text/plain", "text/plain;charset=UTF-8", "multipart/form-data"):
                response = await post_text(client, "/v1/messages", named, content_type)
                assert response.status_code == 415
                assert response.json()["type"] == "error"
                assert response.json()["error"]["type"] == "invalid_request_error"
            form = await client.post("/v1/messages", data={"a": "b"})
            counted = await post_text(client, "/v1/messages/count_tokens", BODY, "text/plain")
            chat = await post_text(client, "/v1/chat/completions", CHAT, "text/plain")
            interrupt = await client.post(
                "/v1/sessions/victim/interrupt", content="", headers={"Content-Type": "text/plain"}
            )
            no_type = await client.post("/v1/messages", content=json.dumps(BODY))
    assert form.status_code == counted.status_code == interrupt.status_code == 415
    assert no_type.status_code == 415
    assert chat.status_code == 415
    assert chat.json()["error"]["code"] == "unsupported_media_type"
    assert set(chat.json()["error"]) == {"message", "type", "param", "code"}
    assert served.nothing_ran()


async def test_json_with_parameters_and_body_less_posts_are_accepted(served):
    """application/json with a charset (any case) runs; a POST with no body and no
    Content-Type (httpx or curl calling /interrupt) is not a content-type problem."""
    with trio.fail_after(GUARD_S):
        async with httpx.AsyncClient(base_url=served.url) as client:
            ran = await client.post(
                "/v1/messages",
                content=json.dumps(BODY),
                headers={"Content-Type": "Application/JSON; charset=utf-8", "X-Session-ID": "s"},
            )
            interrupt = await client.post("/v1/sessions/s/interrupt")
            deleted = await client.delete("/v1/sessions/nobody")
    assert ran.status_code == 200
    assert interrupt.status_code == 200
    assert interrupt.json() == {"id": "s", "interrupted": False}
    assert deleted.status_code == 404


async def test_a_foreign_origin_is_403_before_anything_runs(served):
    """Any Origin not allowed (none is by default), ``null`` included, is refused on
    every route, in the route's API format, before the request body is even read."""
    with trio.fail_after(GUARD_S):
        async with httpx.AsyncClient(base_url=served.url) as client:
            for origin in (EVIL, "null", "http://localhost:3000", served.url):
                headers = {"Origin": origin, "X-Session-ID": "victim"}
                refused = await client.post("/v1/messages", json=BODY, headers=headers)
                assert refused.status_code == 403, origin
                assert refused.json()["error"]["type"] == "permission_error"
                assert "access-control-allow-origin" not in refused.headers
            listing = await client.get("/v1/sessions", headers={"Origin": EVIL})
            chat = await client.post("/v1/chat/completions", json=CHAT, headers={"Origin": EVIL})
            preflight = await client.options(
                "/v1/messages",
                headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
            )
    assert listing.status_code == 403
    assert chat.status_code == 403
    assert chat.json()["error"]["code"] == "origin_not_allowed"
    assert preflight.status_code == 403  # CORS is off: no preflight is answered
    assert "access-control-allow-origin" not in preflight.headers
    assert served.nothing_ran()


async def test_cross_site_fetch_metadata_is_403_but_a_typed_url_is_not(served):
    """``Sec-Fetch-Site: cross-site`` (an image or script tag on another site sends no
    Origin) is refused; ``none`` (the user typed the URL) and ``same-origin`` are not."""
    with trio.fail_after(GUARD_S):
        async with httpx.AsyncClient(base_url=served.url) as client:
            cross = await client.get("/v1/sessions", headers={"Sec-Fetch-Site": "cross-site"})
            post = await client.post(
                "/v1/messages", json=BODY, headers={"Sec-Fetch-Site": "cross-site"}
            )
            typed = await client.get("/v1/sessions", headers={"Sec-Fetch-Site": "none"})
            same = await client.get("/v1/sessions", headers={"Sec-Fetch-Site": "same-origin"})
    assert cross.status_code == post.status_code == 403
    assert typed.status_code == same.status_code == 200
    assert served.nothing_ran()


async def test_an_allowed_origin_gets_cors_answers_and_others_still_do_not(tmp_path):
    """With ``allowed_origins``, that origin's preflight is answered (methods, headers,
    max age, Vary), its responses carry Access-Control-Allow-Origin and its WebSocket
    is accepted; another origin is still refused and gets no CORS header."""
    async with serving(tmp_path, allowed_origins=[APP + "/"]) as served:
        with trio.fail_after(GUARD_S):
            async with httpx.AsyncClient(base_url=served.url) as client:
                preflight = await client.options(
                    "/v1/messages",
                    headers={
                        "Origin": APP,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "content-type,x-api-key,x-stainless-os",
                    },
                )
                actual = await client.post(
                    "/v1/messages",
                    json=BODY,
                    headers={"Origin": APP, "Sec-Fetch-Site": "cross-site"},
                )
                plain = await client.get("/v1/sessions")
                other = await client.post("/v1/messages", json=BODY, headers={"Origin": EVIL})
            socket = await handshake(served.url, "/v1/sessions/s/ws", {"Origin": APP})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-api-key", "authorization", "anthropic-version"} <= allowed
    assert {"x-session-id", "x-stainless-os"} <= allowed
    assert int(preflight.headers["access-control-max-age"]) > 0
    assert "origin" in preflight.headers["vary"].lower()
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == APP
    assert "origin" in actual.headers["vary"].lower()
    assert "x-session-id" in actual.headers["access-control-expose-headers"]
    assert plain.status_code == 200
    assert "access-control-allow-origin" not in plain.headers
    assert "origin" in plain.headers["vary"].lower()  # caches must not mix the two
    assert other.status_code == 403
    assert "access-control-allow-origin" not in other.headers
    assert socket.startswith(b"HTTP/1.1 101 "), socket[:200]


async def test_a_foreign_host_is_421_in_each_apis_format(served):
    """DNS rebinding: the browser names the attacker's host. 421 on every route (OpenAI
    error JSON on the OpenAI routes), and nothing is listed or run."""
    with trio.fail_after(GUARD_S):
        async with httpx.AsyncClient(base_url=served.url) as client:
            port = httpx.URL(served.url).port
            evil = {"Host": f"evil.example:{port}"}
            listing = await client.get("/v1/sessions", headers=evil)
            models = await client.get("/v1/models", headers=evil)
            turn = await client.post("/v1/messages", json=BODY, headers=evil)
            for host in ("localhost", f"LOCALHOST.:{port}", f"127.0.0.1:{port}", "[::1]:1"):
                assert (await client.get("/health", headers={"Host": host})).status_code == 200
            assert (await client.get("/health", headers={"Host": "10.0.0.7"})).status_code == 200
    assert listing.status_code == turn.status_code == models.status_code == 421
    assert listing.json()["type"] == "error"
    assert "evil.example" in listing.json()["error"]["message"]
    assert models.json()["error"]["code"] == "host_not_allowed"
    assert served.nothing_ran()


async def test_a_request_without_host_is_421(served):
    """An HTTP/1.0 request may omit Host; it cannot show it was meant for this server,
    so it is refused like a foreign one."""
    url = httpx.URL(served.url)
    with trio.fail_after(GUARD_S):
        stream = await trio.open_tcp_stream(url.host, url.port)
        async with stream:
            await stream.send_all(b"GET /v1/sessions HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 421 "), answer[:100]
    assert b"Host header" in answer


async def test_allowed_hosts_adds_names_and_star_needs_keys(tmp_path):
    """``allowed_hosts`` adds a proxy's name (any port); ``"*"`` accepts any Host, and
    is refused at start-up unless API keys (or --insecure-no-auth) are set."""
    async with serving(tmp_path, allowed_hosts=["proxy.example"]) as served:
        with trio.fail_after(GUARD_S):
            async with httpx.AsyncClient(base_url=served.url) as client:
                proxied = await client.get("/v1/sessions", headers={"Host": "proxy.example:443"})
                other = await client.get("/v1/sessions", headers={"Host": "other.example"})
    assert proxied.status_code == 200
    assert other.status_code == 421
    with pytest.raises(InsecureBindError, match="DNS rebinding"):
        Settings(state_dir=tmp_path, allowed_hosts=["*"]).check_exposure()
    Settings(state_dir=tmp_path, allowed_hosts=["*"], api_keys=["k"]).check_exposure()
    Settings(state_dir=tmp_path, allowed_hosts=["*"], insecure_no_auth=True).check_exposure()
    policy = RequestPolicy(host="127.0.0.1", allowed_hosts=["*"], allowed_origins=[])
    policy.check("http", "GET", {"host": ["anything.example"]})
    with pytest.raises(Refusal):
        policy.check("http", "GET", {"host": ["anything.example"], "origin": [EVIL]})


def test_allowed_origins_must_be_origins(tmp_path):
    """``*``, ``null`` or a URL with a path is refused as a setting: each would allow
    pages nobody meant to allow."""
    for bad in ("*", "null", "app.example", "https://app.example/path"):
        with pytest.raises(ValueError, match="not an origin"):
            Settings(state_dir=tmp_path, allowed_origins=[bad])
    settings = Settings(state_dir=tmp_path, allowed_origins=["HTTPS://App.Example/"])
    assert settings.allowed_origins == ["https://app.example"]


async def handshake(url: str, path: str, headers: dict[str, str]) -> bytes:
    """A WebSocket opening handshake by hand; the server's answer (head and body).

    (trio-websocket 0.12 raises ``ConnectionRejected`` from its reader task without
    closing the socket, which pytest reports as a leak.)"""
    parsed = httpx.URL(url)
    headers = {"Host": f"{parsed.host}:{parsed.port}", **headers}
    lines = [
        f"GET {path} HTTP/1.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    stream = await trio.open_tcp_stream(parsed.host, parsed.port)
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive_some()
        head, _, body = answer.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        while length and len(body) < int(length.group(1)):
            body += await stream.receive_some()
    return head + b"\r\n\r\n" + body


async def test_a_websocket_from_a_foreign_origin_is_refused_before_accept(served):
    """Cross-site WebSocket hijacking: the handshake gets 403 (421 for a foreign Host)
    with error JSON, instead of 101 and an open connection; nothing runs."""
    path = "/v1/sessions/victim/ws"
    with trio.fail_after(GUARD_S):
        for headers, status in (
            ({"Origin": EVIL}, b"403"),
            ({"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, b"403"),
            ({"Sec-Fetch-Site": "cross-site"}, b"403"),
            ({"Origin": EVIL, "Host": "evil.example"}, b"421"),
        ):
            answer = await handshake(served.url, path, headers)
            assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
            assert b'"type": "error"' in answer
        # The same handshake without Origin (a program, not a page) is accepted.
        accepted = await handshake(served.url, path, {})
        assert accepted.startswith(b"HTTP/1.1 101 "), accepted[:200]
        async with httpx.AsyncClient(base_url=served.url) as client:
            assert (await client.get("/v1/sessions")).json()["data"] == []
    assert served.nothing_ran()


async def test_deeply_nested_json_is_a_400_in_each_api_never_a_500(served):
    """100,000 nested ``[`` (a RecursionError for ``json.loads``) is a 400 on both APIs
    and in a JSON-encoded ``metadata.user_id``; a valid body nested as deep as the
    parser allows is answered without a 5xx; the server serves normally afterwards."""
    deep = {"a": 1}
    for _ in range(190):
        deep = {"a": [deep]}
    with trio.fail_after(GUARD_S):
        async with httpx.AsyncClient(base_url=served.url) as client:
            for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions"):
                response = await client.post(
                    path, content=NESTED, headers={"Content-Type": "application/json"}
                )
                assert response.status_code == 400, path
                assert "recursion limit" in response.json()["error"]["message"]
            chat = await client.post(
                "/v1/chat/completions", content=NESTED, headers={"Content-Type": "application/json"}
            )
            in_user_id = await client.post(
                "/v1/messages", json={**BODY, "metadata": {"user_id": NESTED}}
            )
            deep_answers = [
                await client.post("/v1/messages", json={**BODY, "metadata": deep}),
                await client.post("/v1/messages/count_tokens", json={**BODY, "tools": [deep]}),
                await client.post("/v1/chat/completions", json={**CHAT, "metadata": deep}),
                await client.post("/v1/messages", json={**BODY, "messages": [deep]}),
                await client.post(
                    "/v1/messages",
                    json={
                        **BODY,
                        "messages": [
                            {"role": "user", "content": [{"type": "text", "text": "x", "a": deep}]}
                        ],
                    },
                ),
            ]
            after = await client.post("/v1/messages", json=BODY)
    assert set(chat.json()["error"]) == {"message", "type", "param", "code"}
    assert in_user_id.status_code == 200
    assert all(r.status_code < 500 for r in deep_answers), [r.status_code for r in deep_answers]
    assert after.status_code == 200


async def test_a_deeply_nested_websocket_frame_is_an_error_frame_and_the_connection_lives(
    served,
):
    """The same 100,000 ``[`` over the WebSocket: an ``error`` frame, and the same
    connection then runs a turn."""
    with trio.fail_after(GUARD_S):
        async with open_session_client(served.url, "deep") as client:
            await client._ws.send_message(NESTED)
            error = await client.receive()
            assert error["type"] == "error"
            assert error["error"]["type"] == "invalid_request_error"
            assert "recursion limit" in error["error"]["message"]
            await client.send_turn("still here")
            frames = []
            while (frame := await client.receive())["type"] != "turn_completed":
                frames.append(frame)
    text = "".join(f["text"] for f in frames if f["type"] == "text_delta")
    assert text == "echo: still here #1"


async def test_the_official_anthropic_and_openai_clients_still_work(served):
    """The SDKs send application/json and no Origin: nothing here gets in their way."""
    with trio.fail_after(GUARD_S):
        async with anthropic.AsyncAnthropic(
            base_url=served.url, api_key="unused", max_retries=0
        ) as api:
            message = await api.messages.create(**BODY, extra_headers={"X-Session-ID": "sdk"})
            count = await api.messages.count_tokens(model="m", messages=BODY["messages"])
        async with openai.AsyncOpenAI(
            base_url=served.url + "/v1", api_key="unused", max_retries=0
        ) as oai:
            completion = await oai.chat.completions.create(**CHAT)
            models = await oai.models.list()
    assert message.content[0].text == "echo: hi #1"
    assert count.input_tokens > 0
    assert completion.choices[0].message.content == "echo: hi #1"
    assert models.data


def test_serve_refuses_any_host_without_keys_at_start_up(tmp_path):
    """``ccactors serve`` with ``CCACTORS_ALLOWED_HOSTS='["*"]'`` and no API keys exits
    with status 2 before listening, saying why."""
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CCACTORS_")},
        "CCACTORS_ALLOWED_HOSTS": '["*"]',
        "CCACTORS_STATE_DIR": str(tmp_path),
        "CCACTORS_CLI_PATH": sys.executable,  # any file: the CLI is never started
    }
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "CCACTORS_ALLOWED_HOSTS" in result.stderr
    assert "DNS rebinding" in result.stderr
    assert "serving on" not in result.stdout


async def test_the_servers_own_page_may_send_its_own_origin(served):
    """Browsers send ``Origin`` with a same-origin POST or DELETE (the dashboard's
    Interrupt and Delete buttons): the server's own origin as its ``Host`` names it,
    with ``Sec-Fetch-Site: same-origin``, reaches the route; the same origin without
    that header or with another value, and another port's or name's origin, do not."""
    port = httpx.URL(served.url).port
    own = {"Origin": served.url, "Sec-Fetch-Site": "same-origin"}
    refused_headers = [
        {"Origin": served.url},
        {"Origin": served.url, "Sec-Fetch-Site": "same-site"},
        {"Origin": served.url, "Sec-Fetch-Site": "cross-site"},
        {"Origin": f"http://127.0.0.1:{port + 1}", "Sec-Fetch-Site": "same-origin"},
        {"Origin": f"http://localhost:{port}", "Sec-Fetch-Site": "same-origin"},
    ]
    with trio.fail_after(GUARD_S):
        async with httpx.AsyncClient(base_url=served.url) as client:
            allowed = [
                await client.delete("/v1/sessions/nobody", headers=own),
                await client.post("/v1/sessions/nobody/interrupt", headers=own),
            ]
            refused = [
                await client.delete("/v1/sessions/nobody", headers=headers)
                for headers in refused_headers
            ]
    assert [r.status_code for r in allowed] == [404, 404]  # reached the routes
    assert [r.status_code for r in refused] == [403] * len(refused_headers)
    assert served.nothing_ran()
