"""Property-based: malformed and hostile requests to every endpoint never get a 5xx,
never take the server down, and never create a file outside the state directory's
workspace and CLI-config roots."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory
from app._app import create_app
from app._settings import Settings

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
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", "tool", "x"]),
            "content": json_values,
        }
    ),
    max_size=4,
)
bodies = st.one_of(
    st.binary(max_size=300),
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
ROUTES = [
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/{id}"),
    ("DELETE", "/v1/sessions/{id}"),
    ("GET", "/v1/sessions/{id}/messages"),
    ("POST", "/v1/sessions/{id}/interrupt"),
    ("GET", "/v1/stats"),
    ("GET", "/metrics"),
    ("PUT", "/v1/messages"),
]


@pytest.fixture
async def app_client(tmp_path):
    settings_ = Settings(state_dir=tmp_path / "state", sse_ping_interval_s=0.5)
    config = SupervisorConfig(
        workspace_root=settings_.workspace_root, max_live_sessions=4, mailbox_size=2
    )
    async with open_supervisor(config, ScriptedClientFactory()) as supervisor:
        yield create_app(supervisor, settings_).test_client(), tmp_path


@settings(
    max_examples=2000,
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
)
async def test_hostile_requests_never_get_a_5xx(
    app_client, route, session_id, header_id, body, query
):
    """Whatever the path, headers, query and body: a 2xx/4xx answer, never a 5xx."""
    client, _ = app_client
    method, template = route
    path = template.replace("{id}", urllib.parse.quote(session_id, safe=""))
    headers = {"content-type": "application/json"}
    if header_id is not None:
        headers["X-Session-ID"] = header_id.encode("utf-8", "replace").decode("latin-1")
    with trio.fail_after(10):
        response = await client.open(
            path, method=method, data=body, headers=headers, query_string=query
        )
        await response.get_data()
    assert response.status_code < 500, (method, path, body[:200], response.status_code)


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
