"""The operator's dashboard over the fake client: who may read it, what its page is
allowed to do, how sessions of any key are addressed, the snapshot stream, and the
overview's figures (first-token quantiles as Prometheus estimates them, turns per
minute). The page in a real browser is tests/e2e/test_dashboard.py."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from prometheus_client import CollectorRegistry, Histogram

from actors import open_supervisor
from actors.testing import ScriptedClientFactory, text_reply
from app._settings import Settings
from app.http._app import create_app
from app.http._dashboard import ASSET_DIR, ASSETS, CONTENT_SECURITY_POLICY, MAX_SNAPSHOT_PAGE
from app.http._overview import histogram_buckets, histogram_quantile

BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
ALICE = {"x-api-key": "alice-key"}
BOB = {"x-api-key": "bob-key"}
OPERATOR = {"x-api-key": "ops-key"}
DATA_ROUTES = [
    ("GET", "/v1/dashboard/overview"),
    ("GET", "/v1/dashboard/stream"),
    ("GET", "/v1/dashboard/sessions/-/s"),
    ("GET", "/v1/dashboard/sessions/-/s/events"),
    ("POST", "/v1/dashboard/sessions/-/s/interrupt"),
    ("DELETE", "/v1/dashboard/sessions/-/s"),
]


def owner(key: str) -> str:
    """The dashboard's owner segment for sessions made with ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def keyed(tmp_path, **overrides) -> Settings:
    return Settings(
        state_dir=tmp_path,
        api_keys=["alice-key", "bob-key"],
        admin_api_keys=["ops-key"],
        warm_pool_size=0,
        **overrides,
    )


@asynccontextmanager
async def app_client(settings: Settings, factory: ScriptedClientFactory | None = None):
    async with open_supervisor(
        settings.supervisor_config(), factory or ScriptedClientFactory()
    ) as sup:
        yield create_app(sup, settings).test_client()


async def turn(client, session: str, headers: dict | None = None, prompt: str = "hi") -> None:
    body = {**BODY, "messages": [{"role": "user", "content": prompt}]}
    response = await client.post(
        "/v1/messages", json=body, headers={**(headers or {}), "X-Session-ID": session}
    )
    assert response.status_code == 200, await response.get_data()


class Stream:
    """A streamed response of the app, read as it arrives."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.send_chunk, self.chunks = trio.open_memory_channel[bytes](math.inf)

    async def receive(self) -> bytes:
        return await self.chunks.receive()


@asynccontextmanager
async def event_stream(client, path: str, headers: dict | None = None) -> AsyncIterator[Stream]:
    """Run one GET of ``path`` through the app (its ASGI callable, with the test
    client's scope) and yield it once its head is sent; leaving the block disconnects
    the client. (The test client's own connection waits, after a disconnect, for a last
    body message that a cancelled stream never sends.)"""
    scope = client.request(path, headers=headers or {}).scope
    stream = Stream()
    gone = trio.Event()
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            stream.status = message["status"]
            stream.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            stream.started.set()
        elif message["type"] == "http.response.body" and message.get("body"):
            stream.send_chunk.send_nowait(message["body"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.app, scope, receive, send)
        await stream.started.wait()
        yield stream
        gone.set()


async def next_event(connection) -> tuple[str, dict]:
    """The next SSE event (comments skipped) as (name, JSON data)."""
    buffer = b""
    while True:
        buffer += await connection.receive()
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            fields = dict(
                line.split(": ", 1) for line in frame.decode().splitlines() if ": " in line
            )
            if "event" in fields:
                assert not buffer, "one frame per chunk"
                return fields["event"], json.loads(fields["data"])


# -- Who may read it ------------------------------------------------------------------


async def test_dashboard_data_needs_an_operator_key_once_keys_are_configured(tmp_path):
    """With API keys, every /v1/dashboard/ route is 401 without a key and 403 with a
    key that is not an operator's, in Anthropic's error format; an operator key reads."""
    async with app_client(keyed(tmp_path)) as client:
        for method, path in DATA_ROUTES:
            anonymous = await client.open(path, method=method)
            user = await client.open(path, method=method, headers=ALICE)
            assert anonymous.status_code == 401, path
            assert user.status_code == 403, path
            assert (await user.get_json())["error"]["type"] == "permission_error"
        # Paths under the prefix that are no route are guarded too.
        assert (await client.get("/v1/dashboard/nothing", headers=ALICE)).status_code == 403
        assert (await client.get("/v1/dashboard/overview", headers=OPERATOR)).status_code == 200


async def test_dashboard_data_is_open_on_a_server_without_keys(tmp_path):
    """Without keys (loopback only) the routes answer without any key; sessions are
    addressed with the owner ``-``."""
    async with app_client(Settings(state_dir=tmp_path, warm_pool_size=0)) as client:
        await turn(client, "s")
        overview = await client.get("/v1/dashboard/overview")
        session = await client.get("/v1/dashboard/sessions/-/s")
    assert overview.status_code == 200
    assert (await overview.get_json())["sessions"] == 1
    body = await session.get_json()
    assert body["session"]["address"] == "-/s"
    assert body["session"]["owner"] == "-"


async def test_the_page_and_its_assets_are_open_and_allow_only_their_own_scripts(tmp_path):
    """GET /dashboard and its assets need no key (they hold no data) and carry a CSP
    allowing only this server's scripts, styles and requests, no framing, no caching;
    only listed assets are served; the page has no inline script or style and the
    script never parses data as HTML."""
    async with app_client(keyed(tmp_path)) as client:
        page = await client.get("/dashboard")
        assets = {name: await client.get(f"/dashboard/assets/{name}") for name in ASSETS}
        missing = await client.get("/dashboard/assets/index.html.bak")
        escape = await client.get("/dashboard/assets/..%2F_dashboard.py")
    for response in (page, *assets.values()):
        assert response.status_code == 200
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert page.content_type.startswith("text/html")
    assert assets["dashboard.js"].content_type.startswith("text/javascript")
    for refused in (missing, escape):
        assert refused.status_code == 404
        assert (await refused.get_json())["error"]["type"] == "not_found_error"
    html = (await page.get_data()).decode()
    referenced = re.findall(r'(?:src|href)="(/[^"]*)"', html)
    assert sorted(referenced) == sorted(f"/dashboard/assets/{name}" for name in ASSETS)
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    script = (ASSET_DIR / "dashboard.js").read_text()
    assert not re.search(r"\.(inner|outer)HTML|insertAdjacentHTML|document\.write", script)


# -- Sessions of any key, by owner and id ---------------------------------------------


async def test_an_operator_reaches_any_keys_session_by_owner_and_id(tmp_path):
    """Two keys each have a session named ``s``: the operator reads each (with its
    conversation from the transcript) at ``<owner>/s``, interrupts one and deletes the
    other; the owners see exactly that. The same id through the management API is the
    operator's own namespace (404). Malformed owners or ids are 400, unknown 404.

    On the real clock: reading the transcript waits on a worker thread, during which a
    virtual clock would jump to the busy turn's first-chunk deadline."""
    settings = keyed(tmp_path)
    factory = ScriptedClientFactory(
        script=lambda p, h: text_reply("x", first_delay=math.inf if p == "long" else 0)
    )
    async with app_client(settings, factory) as client, trio.open_nursery() as nursery:
        await turn(client, "s", ALICE)
        alice = await client.get("/v1/sessions/s", headers=ALICE)
        claude_id = (await alice.get_json())["claude_session_id"]
        transcript = settings.claude_config_dir / "projects" / "-w" / f"{claude_id}.jsonl"
        transcript.parent.mkdir(parents=True)
        lines = [
            {"type": "user", "message": {"role": "user", "content": "hi"}},
            {"type": "assistant", "message": {"role": "assistant", "content": "x"}},
        ]
        transcript.write_text("".join(json.dumps(line) + "\n" for line in lines))

        bobs_turn: dict = {}

        async def bob_asks() -> None:
            long = {**BODY, "messages": [{"role": "user", "content": "long"}]}
            response = await client.post(
                "/v1/messages", json=long, headers={**BOB, "X-Session-ID": "s"}
            )
            bobs_turn["status"] = response.status_code

        nursery.start_soon(bob_asks)
        await trio.testing.wait_all_tasks_blocked()

        read = await client.get(f"/v1/dashboard/sessions/{owner('alice-key')}/s", headers=OPERATOR)
        assert read.status_code == 200
        body = await read.get_json()
        assert body["session"]["owner"] == owner("alice-key")
        assert body["session"]["address"] == f"{owner('alice-key')}/s"
        assert body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "x"}]},
        ]
        bobs = f"/v1/dashboard/sessions/{owner('bob-key')}/s"
        assert (await (await client.get(bobs, headers=OPERATOR)).get_json())["session"][
            "state"
        ] == "busy"
        assert (await client.get("/v1/sessions/s", headers=OPERATOR)).status_code == 404

        interrupted = await client.post(f"{bobs}/interrupt", headers=OPERATOR)
        assert (await interrupted.get_json())["interrupted"] is True
        await trio.testing.wait_all_tasks_blocked()
        assert bobs_turn["status"] == 409  # Anthropic's reply to an interrupted turn

        deleted = await client.delete(
            f"/v1/dashboard/sessions/{owner('alice-key')}/s", headers=OPERATOR
        )
        assert (await deleted.get_json())["transcripts_deleted"] == 1
        assert (await client.get("/v1/sessions/s", headers=ALICE)).status_code == 404
        assert (await client.get("/v1/sessions/s", headers=BOB)).status_code == 200

        for path, status in (
            ("/v1/dashboard/sessions/ALICE/s", 400),
            ("/v1/dashboard/sessions/abc/s", 400),
            (f"/v1/dashboard/sessions/{owner('bob-key')}/bad%20id", 400),
            (f"/v1/dashboard/sessions/{owner('bob-key')}/nobody", 404),
            (f"/v1/dashboard/sessions/{owner('alice-key')}/s", 404),
        ):
            response = await client.get(path, headers=OPERATOR)
            assert response.status_code == status, path
            assert (await response.get_json())["type"] == "error"


# -- The snapshot stream --------------------------------------------------------------


async def test_the_snapshot_stream_sends_one_at_once_and_another_after_a_change(
    tmp_path, autojump_clock
):
    """The stream's first event is a snapshot of the overview and every key's
    sessions; nothing more while nothing changes; a new session brings a new snapshot
    within a couple of seconds."""
    async with app_client(keyed(tmp_path)) as client:
        await turn(client, "a", ALICE)
        async with event_stream(client, "/v1/dashboard/stream", OPERATOR) as stream:
            name, first = await next_event(stream)
            assert name == "snapshot"
            assert [s["address"] for s in first["sessions"]["data"]] == [f"{owner('alice-key')}/a"]
            assert first["overview"]["sessions"] == 1
            with trio.move_on_after(5) as quiet:
                await stream.receive()
            assert quiet.cancelled_caught, "a snapshot without a change"

            await turn(client, "b", BOB)
            t0 = trio.current_time()
            name, second = await next_event(stream)
            assert name == "snapshot"
            assert trio.current_time() - t0 <= 2
            assert [s["owner"] for s in second["sessions"]["data"]] == [
                owner("alice-key"),
                owner("bob-key"),
            ]
            assert second["overview"]["sessions"] == 2
            assert second["overview"]["turns_per_minute"] == 2


async def test_snapshots_page_through_sessions_by_address_at_most_100_at_a_time(tmp_path):
    """``limit`` and ``after_id`` (an ``<owner>/<id>`` address) page the sessions as
    ``GET /v1/sessions`` does; a page is at most ``MAX_SNAPSHOT_PAGE``; bad queries are
    400 before the stream starts."""
    async with app_client(keyed(tmp_path)) as client:
        for session in ("s1", "s2", "s3"):
            await turn(client, session, ALICE)
            await trio.sleep(0.01)  # distinct creation times
        address = f"{owner('alice-key')}/s1"
        async with event_stream(
            client, f"/v1/dashboard/stream?limit=1&after_id={address}", OPERATOR
        ) as stream:
            _, snapshot = await next_event(stream)
        page = snapshot["sessions"]
        assert [s["id"] for s in page["data"]] == ["s2"]
        assert page["has_more"] is True
        assert page["last_id"] == f"{owner('alice-key')}/s2"
        for query in (f"limit={MAX_SNAPSHOT_PAGE + 1}", "state=sleepy", "after_id=-/s1"):
            response = await client.get(f"/v1/dashboard/stream?{query}", headers=OPERATOR)
            assert response.status_code == 400, query


async def test_an_operators_streams_count_against_the_operators_own_cap(tmp_path):
    """Dashboard streams (snapshots and a session's events) count against the
    operator's ``max_listeners_per_key``, not the watched session's owner's."""
    async with app_client(keyed(tmp_path, max_listeners_per_key=1)) as client:
        await turn(client, "s", ALICE)
        events = f"/v1/dashboard/sessions/{owner('alice-key')}/s/events"
        async with event_stream(client, events, OPERATOR) as watching:
            assert watching.status == 200
            refused = await client.get("/v1/dashboard/stream", headers=OPERATOR)
            assert refused.status_code == 429
            assert "Retry-After" in refused.headers
            async with event_stream(client, "/v1/sessions/s/events", ALICE) as own:
                assert own.status == 200


async def test_a_fork_shows_its_parent_and_counts_in_the_overview(tmp_path):
    """A regenerated answer forks the conversation (lineage): the dashboard shows the
    new session's ``parent`` (the session and turn it branched from) and counts it in
    the overview's ``forks``."""
    async with app_client(Settings(state_dir=tmp_path, warm_pool_size=0)) as client:

        async def ask(messages: list[dict]) -> tuple[str, str]:
            response = await client.post("/v1/messages", json={**BODY, "messages": messages})
            assert response.status_code == 200
            text = (await response.get_json())["content"][0]["text"]
            return text, response.headers["X-Session-ID"]

        one = [{"role": "user", "content": "one"}]
        answer, original = await ask(one)
        two = [*one, {"role": "assistant", "content": answer}, {"role": "user", "content": "two"}]
        await ask(two)
        _, fork = await ask(two)  # the same request again: regenerate
        assert fork != original
        async with event_stream(client, "/v1/dashboard/stream") as stream:
            _, snapshot = await next_event(stream)
        session = await (await client.get(f"/v1/dashboard/sessions/-/{fork}")).get_json()
    rows = {row["id"]: row for row in snapshot["sessions"]["data"]}
    assert rows[fork]["parent"] == {"id": original, "turn": 1}
    assert rows[original]["parent"] is None
    assert session["session"]["parent"] == {"id": original, "turn": 1}
    assert snapshot["overview"]["forks"] == 1


# -- Overview figures -----------------------------------------------------------------


def test_histogram_quantile_interpolates_within_a_bucket_as_prometheus_does():
    """The rank's bucket is found and the value interpolated linearly between its
    bounds (from 0 for the first); a rank in +Inf gives the highest finite bound; no
    observations, or no +Inf bucket, give None."""
    buckets = [(0.1, 10), (0.5, 30), (1.0, 40), (math.inf, 40)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)  # 0.1 + 0.4 * 10/20
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.9)  # 0.5 + 0.5 * 8/10
    assert histogram_quantile(0.5, list(reversed(buckets))) == pytest.approx(0.3)
    assert histogram_quantile(0.25, [(2.0, 4), (math.inf, 4)]) == pytest.approx(0.5)
    assert histogram_quantile(0.9, [(1.0, 5), (math.inf, 10)]) == 1.0
    assert histogram_quantile(0.5, [(1.0, 0), (math.inf, 0)]) is None
    assert histogram_quantile(0.5, [(1.0, 3), (2.0, 4)]) is None
    assert histogram_quantile(0.5, [(math.inf, 4)]) is None
    with pytest.raises(ValueError):
        histogram_quantile(1.5, buckets)


def test_histogram_quantile_reads_a_prometheus_client_histogram():
    """``histogram_buckets`` reads the cumulative ``le`` buckets ``/metrics`` exposes."""
    histogram = Histogram("t", "t", buckets=(1, 2, 4), registry=CollectorRegistry())
    for value in (0.5, 1.5, 1.5, 3):
        histogram.observe(value)
    buckets = histogram_buckets(histogram)
    assert buckets == [(1.0, 1.0), (2.0, 3.0), (4.0, 4.0), (math.inf, 4.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.5)  # 1 + 1 * (2-1)/2


async def test_turns_per_minute_counts_turns_ended_in_the_last_60_seconds(tmp_path, autojump_clock):
    """A turn counts for 60 s after it ended, then drops out."""
    async with app_client(Settings(state_dir=tmp_path, warm_pool_size=0)) as client:

        async def per_minute() -> int:
            overview = await client.get("/v1/dashboard/overview")
            return (await overview.get_json())["turns_per_minute"]

        await turn(client, "s")
        await trio.sleep(30)
        await turn(client, "s")
        assert await per_minute() == 2
        await trio.sleep(31)
        assert await per_minute() == 1
        await trio.sleep(30)
        assert await per_minute() == 0
