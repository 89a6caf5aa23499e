"""Property-based: malformed and hostile requests to every endpoint never get a 5xx,
never take the server down, and never create a file outside the state directory's
workspace and CLI-config roots.

Requests vary what a browser or an attacker controls: path ids, Content-Type, Host,
Origin, Sec-Fetch-Site, the key presented (with API keys configured and without), and
bodies up to the size limit, including pathological nesting. The WebSocket and the
``/events`` stream are fuzzed too."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError

from actors import SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory
from app._settings import Settings
from app.http._app import create_app

# Session ids as an attacker would send them: path tricks, NUL and other control
# characters, unicode, and lengths far past the limit.
hostile_ids = st.one_of(
    st.sampled_from(["..", "../..", "/etc/passwd", "a/b", "a\0b", "x" * 129, "x" * 5000, ""]),
    st.text(min_size=0, max_size=300),
    st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
# Image and document blocks (Anthropic) and parts (OpenAI) with hostile fields.
media_strings = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "image/png",
            "application/pdf",
            "text/plain",
            "iVBORw0KGgo=",
            "JVBERi0=",
            "https://example.com/a.png",
            "data:image/png;base64,iVBORw0KGgo=",
            "data:;base64,",
            "data:image/png;base64",
            "https://[::1",
        ]
    ),
)
media_values = st.one_of(media_strings, json_values)
media_blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["image", "document", "image_url", "file"])},
    optional={
        "source": st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["base64", "url", "text", "file", "content"]) | json_values,
                "media_type": media_values,
                "data": media_values,
                "url": media_values,
            },
        )
        | json_values,
        "image_url": st.fixed_dictionaries({}, optional={"url": media_values}) | json_values,
        "file": st.fixed_dictionaries(
            {}, optional={"file_data": media_values, "file_id": media_values}
        ),
        "title": media_values,
        "citations": json_values,
    },
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", "tool", "x"]),
            "content": json_values | st.lists(media_blocks | json_values, max_size=3),
        }
    ),
    max_size=4,
)
MAX_BODY = 64 * 1024
# Past the parser's depth limit, and near and past the body size limit.
pathological = st.one_of(
    st.integers(1, MAX_BODY).map(lambda n: b"[" * n),
    st.integers(1, MAX_BODY // 5).map(lambda n: b'{"a":' * n),
    st.integers(1, MAX_BODY).map(
        lambda n: json.dumps(
            {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * n}]}
        ).encode()
    ),
)
bodies = st.one_of(
    st.binary(max_size=300),
    pathological,
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "model": json_values,
            "max_tokens": json_values,
            "messages": messages,
            "stream": json_values,
        },
        optional={"metadata": st.dictionaries(st.text(), json_values, max_size=3)},
    ).map(lambda v: json.dumps(v).encode()),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ]
    ),
    st.text(max_size=40),
)
# (Quart's test client builds a URL from Host, so only names a URL can hold.)
hosts = st.one_of(
    st.sampled_from(["localhost", "127.0.0.1:8765", "[::1]:1", "evil.example", "10.0.0.7", ""]),
    st.from_regex(r"[A-Za-z0-9._:~%-]{0,40}", fullmatch=True),
)
origins = st.one_of(
    st.none(),
    st.sampled_from(["https://evil.example", "null", "http://127.0.0.1:8765", "file://"]),
    st.text(max_size=40),
)
fetch_sites = st.one_of(
    st.none(), st.sampled_from(["cross-site", "same-site", "same-origin", "none", "x"])
)
USER_KEY, ADMIN_KEY = "sk-fuzz-user", "sk-fuzz-admin"
keys_presented = st.sampled_from([None, USER_KEY, ADMIN_KEY, "sk-wrong"])


def _latin1(text: str) -> str:
    """A header value as a client can send it (no CR, LF or NUL; latin-1)."""
    text = "".join(c for c in text if c not in "\r\n\0")
    return text.encode("utf-8", "replace").decode("latin-1")


ROUTES = [
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/{id}"),
    ("DELETE", "/v1/sessions/{id}"),
    ("GET", "/v1/sessions/{id}/messages"),
    ("GET", "/v1/sessions/{id}/events"),
    ("POST", "/v1/sessions/{id}/interrupt"),
    ("GET", "/v1/stats"),
    ("GET", "/metrics"),
    ("PUT", "/v1/messages"),
    ("GET", "/v1/dashboard/sessions/-/{id}"),
    ("GET", "/v1/dashboard/sessions/-/{id}/events"),
    ("POST", "/v1/dashboard/sessions/-/{id}/interrupt"),
    ("DELETE", "/v1/dashboard/sessions/-/{id}"),
    ("GET", "/dashboard/assets/{id}"),
]


@pytest.fixture(params=["keys-off", "keys-on"])
async def app_client(tmp_path, request):
    keys = (
        {"api_keys": [USER_KEY], "admin_api_keys": [ADMIN_KEY]}
        if request.param == "keys-on"
        else {}
    )
    settings_ = Settings(
        state_dir=tmp_path / "state", sse_ping_interval_s=0.5, max_body_bytes=MAX_BODY, **keys
    )
    config = SupervisorConfig(
        workspace_root=settings_.workspace_root, max_live_sessions=4, mailbox_size=2
    )
    async with open_supervisor(config, ScriptedClientFactory()) as supervisor:
        yield create_app(supervisor, settings_).test_client(), tmp_path


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    session_id=hostile_ids,
    # (CR and LF cannot be sent in a header at all: clients and h11 refuse them.)
    header_id=st.one_of(st.none(), hostile_ids.filter(lambda s: not {"\r", "\n"} & set(s))),
    body=bodies,
    query=st.dictionaries(
        st.sampled_from(["limit", "after_id", "state"]), st.text(max_size=20), max_size=3
    ),
    content_type=content_types,
    host=hosts,
    origin=origins,
    fetch_site=fetch_sites,
    key=keys_presented,
)
async def test_hostile_requests_never_get_a_5xx(
    app_client,
    route,
    session_id,
    header_id,
    body,
    query,
    content_type,
    host,
    origin,
    fetch_site,
    key,
):
    """Whatever the path, headers, query and body: a 2xx/4xx answer, never a 5xx. An
    ``/events`` stream that is accepted stays open: it is left after a moment."""
    client, _ = app_client
    method, template = route
    path = template.replace("{id}", urllib.parse.quote(session_id, safe=""))
    headers = _headers(content_type, host, origin, fetch_site, key)
    if header_id is not None:
        headers["X-Session-ID"] = _latin1(header_id)
    with trio.fail_after(10):
        with trio.move_on_after(2) as streaming:
            response = await client.open(
                path, method=method, data=body, headers=headers, query_string=query
            )
            await response.get_data()
    if streaming.cancelled_caught:
        assert template.endswith("/events"), (method, path)
        return
    assert response.status_code < 500, (method, path, body[:200], response.status_code)


def _headers(content_type, host, origin, fetch_site, key) -> dict[str, str]:
    headers = {"Host": _latin1(host)}
    for name, value in (
        ("Content-Type", content_type),
        ("Origin", origin),
        ("Sec-Fetch-Site", fetch_site),
        ("x-api-key", key),
    ):
        if value is not None:
            headers[name] = _latin1(value)
    return headers


frames = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["turn", "interrupt", "permission_response", "x"])},
        optional={"content": json_values, "id": json_values, "model": json_values},
    ).map(json.dumps),
    pathological.map(lambda b: b.decode()),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    session_id=hostile_ids,
    host=hosts,
    origin=origins,
    key=keys_presented,
    messages=st.lists(frames, max_size=4),
)
async def test_hostile_websockets_never_crash_the_server(
    app_client, session_id, host, origin, key, messages
):
    """Hostile handshakes are refused with a 4xx, and hostile frames on an accepted
    connection get answers (or a close), never a server error: the server then still
    answers ``/health``."""
    client, _ = app_client
    path = "/v1/sessions/" + urllib.parse.quote(session_id, safe="") + "/ws"
    headers = _headers(None, host, origin, None, key)
    with trio.fail_after(10):
        try:
            async with client.websocket(path, headers=headers) as ws:
                for message in messages:
                    await ws.send(message)
                with trio.move_on_after(0.2):
                    while True:
                        await ws.receive()
        except* WebsocketResponseError as refused:  # the handshake was answered over HTTP
            statuses = [error.response.status_code for error in refused.exceptions]
            assert all(400 <= status < 500 for status in statuses), statuses
        except* WebsocketDisconnectError:
            pass  # closed by the server (e.g. 1008 for a bad session id): allowed
        health = await client.get("/health")
    assert health.status_code == 200


async def test_fuzzing_leaves_files_only_in_the_workspace_and_config_roots(app_client):
    """After hostile session ids and bodies, every file the server made is inside its
    workspace root (one safely named directory per session) or its CLI config root."""
    client, root = app_client
    for session_id in ["..", "../../escape", "a/b", "%2e%2e", "x" * 128, "ok-1", ".", "-rf"]:
        await client.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Session-ID": session_id},
        )
    state = root / "state"
    made = [p for p in root.rglob("*")]
    assert all(p == state or state in p.parents for p in made), made
    workspaces = state / "workspaces"
    for path in made:
        if workspaces in path.parents:
            top = path.relative_to(workspaces).parts[0]
            assert re.fullmatch(r"(s|w)-[0-9a-f]{32}", top), path
    assert not _exists(root / "escape") and not _exists(Path("escape"))


def _exists(path: Path) -> bool:
    return path.exists()
