"""End to end: a real headless Chromium on an attacker's page cannot drive ccactors.

The page is served from ``http://evil.example:<port>/`` (Chromium resolves the name to
127.0.0.1 through ``--host-resolver-rules``) and does what any web page the user visits
could do to a loopback server: no-cors POSTs, a WebSocket, and a DNS-rebinding read.
Playwright drives Debian's ``/usr/bin/chromium`` (``playwright install`` is not needed).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 20_000  # each Playwright call; the page's own waits are shorter

# Runs in the attacker's page. Every request is one a page may send without asking the
# server first; the answers are opaque (no-cors) or refused, so the page reports only
# what it could observe. What reached the server is checked from its log.
ATTACK = """
async (target) => {
  const seen = {};
  const turn = JSON.stringify({
    model: "claude-sonnet-4-6", max_tokens: 64, stream: false,
    messages: [{role: "user", content: "run this for me"}],
    metadata: {session_id: "victim"},
  });
  const simple = {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}};
  try {
    const r = await fetch(target + "/v1/messages", {...simple, body: turn});
    seen.messages = r.type;
  } catch (e) { seen.messages = "network error: " + e; }
  try {
    const r = await fetch(target + "/v1/sessions/victim/interrupt", {...simple, body: ""});
    seen.interrupt = r.type;
  } catch (e) { seen.interrupt = "network error: " + e; }
  try {
    await fetch(target + "/v1/sessions", {mode: "cors"});
    seen.cors_read = "read";
  } catch (e) { seen.cors_read = "blocked"; }
  seen.websocket = await new Promise((resolve) => {
    const ws = new WebSocket(target.replace("http", "ws") + "/v1/sessions/x/ws");
    const timer = setTimeout(() => resolve("timeout"), 8000);
    ws.onopen = () => {
      ws.send(JSON.stringify({type: "turn", content: "hijacked"}));
      clearTimeout(timer);
      setTimeout(() => resolve("open"), 2000);
    };
    ws.onclose = (event) => { clearTimeout(timer); resolve("closed " + event.code); };
  });
  return seen;
}
"""

# Runs in the page at http://evil.example:<ccactors port>/ after rebinding: same-origin
# for the browser, so it could read whatever the server answered.
REBOUND_READ = """
async () => {
  const r = await fetch("/v1/sessions");
  return {status: r.status, body: await r.text()};
}
"""


class _AttackerPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>cute cats</title><p>nothing to see here</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[int]:
    """A web server for the attacker's page on a free port; yields the port."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AttackerPage) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield httpd.server_address[1]
        finally:
            httpd.shutdown()
            thread.join(10)


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own: no warm pool, so no CLI runs unless a turn does."""
    server = start_server(
        tmp_path / "state", tmp_path / "server.log", env={"CCACTORS_WARM_POOL_SIZE": "0"}
    )
    try:
        yield server
    finally:
        code = stop_server(server)
    assert code == 0, server.log()


def test_a_web_page_in_a_real_browser_cannot_run_or_read_anything(fresh_server, attacker):
    """From a page at evil.example, Chromium's no-cors POSTs of a turn (naming a
    session) and of an interrupt, a WebSocket sending a turn, and a DNS-rebinding read
    of the session list all reach the server and are refused: no session, no CLI
    process, no turn; the rebound page reads the 421 error, not a listing."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    server = fresh_server
    port = httpx.URL(server.url).port
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            timeout=TIMEOUT_MS,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP evil.example 127.0.0.1",
            ],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"http://evil.example:{attacker}/")
            seen = page.evaluate(ATTACK, server.url)
            rebound = page.goto(f"http://evil.example:{port}/v1/sessions")
            assert rebound is not None
            navigated = (rebound.status, rebound.text())
            fetched = page.evaluate(REBOUND_READ)
        finally:
            browser.close()

    # What the page could observe: opaque answers, a refused WebSocket, no CORS read.
    assert seen["messages"] == seen["interrupt"] == "opaque", seen
    assert seen["cors_read"] == "blocked", seen
    assert seen["websocket"].startswith("closed"), seen
    assert navigated[0] == 421, navigated
    assert fetched["status"] == 421, fetched
    for body in (navigated[1], fetched["body"]):
        assert "evil.example" in body and '"data"' not in body, body

    # The requests did reach the server, and were refused there.
    log = server.log()
    assert "POST /v1/messages 403" in log, log
    assert "POST /v1/sessions/victim/interrupt 403" in log, log
    assert "/v1/sessions/x/ws 403" in log, log
    assert "GET /v1/sessions 421" in log, log

    # Nothing ran.
    sessions = httpx.get(f"{server.url}/v1/sessions", timeout=10).json()
    assert sessions["data"] == []
    assert server.cli_pids() == set()
    stats = httpx.get(f"{server.url}/v1/stats", timeout=10).json()
    assert stats["sessions"] == stats["live_processes"] == 0, stats
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert "ccactors_cli_spawns_total 0.0" in metrics
    assert "ccactors_turns_total{" not in metrics
