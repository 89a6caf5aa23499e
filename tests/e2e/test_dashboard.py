"""End to end: the operator's dashboard in a real headless Chromium, against a real
``ccactors serve --offline`` with API keys, two real CLIs streaming turns for the
official ``anthropic`` client.

Playwright drives Debian's ``/usr/bin/chromium`` (as tests/e2e/test_browser.py does).
A screenshot of the busy overview is kept at ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from app._settings import PROJECT_ROOT

from .conftest import MODEL, Server, ask, start_server, stop_server, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACT = PROJECT_ROOT / "test-artifacts" / "dashboard.png"
USER_KEY = "sk-dashboard-user"
OPERATOR_KEY = "sk-dashboard-operator"
OWNER = hashlib.sha256(USER_KEY.encode()).hexdigest()[:16]  # the user's principal
TIMEOUT_MS = 60_000  # each Playwright wait: CLIs start slowly on a loaded machine
# The offline upstream streams this reply one character every 0.1 s (padded to 600
# characters): a turn that stays busy for about a minute unless interrupted.
LONG_TURN = "[[chunks=600]] [[chunk_delay=0.1]] a long streamed answer"


class StreamedTurn:
    """One streamed turn for the official client, in a thread; keeps what it saw."""

    def __init__(self, url: str, session_id: str) -> None:
        self.session_id = session_id
        self.text: list[str] = []
        self.error: Exception | None = None
        self.completed = False
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        try:
            with (
                anthropic.Anthropic(
                    base_url=url, api_key=USER_KEY, max_retries=0, timeout=120
                ) as client,
                client.messages.stream(
                    model=MODEL,
                    max_tokens=256,
                    messages=[{"role": "user", "content": LONG_TURN}],
                    extra_headers={"X-Session-ID": self.session_id},
                ) as stream,
            ):
                for text in stream.text_stream:
                    self.text.append(text)
            self.completed = True
        except Exception as exc:
            self.error = exc

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the turn of {self.session_id} did not end"


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own with an API key and an operator key, and no warm
    pool: the two sessions' CLIs are the only ones."""
    env = {
        "CCACTORS_API_KEYS": json.dumps([USER_KEY]),
        "CCACTORS_ADMIN_API_KEYS": json.dumps([OPERATOR_KEY]),
        "CCACTORS_WARM_POOL_SIZE": "0",
    }
    server = start_server(tmp_path / "state", tmp_path / "server.log", env=env)
    try:
        yield server
    finally:
        code = stop_server(server)
    assert code == 0, server.log()


def busy_sessions(server: Server) -> int:
    response = httpx.get(
        f"{server.url}/v1/dashboard/overview", headers={"x-api-key": OPERATOR_KEY}, timeout=10
    )
    response.raise_for_status()
    return response.json()["busy_sessions"]


def test_an_operator_watches_and_interrupts_streaming_sessions_in_a_real_browser(keyed_server):
    """With two sessions streaming: the page without a key shows only the login
    prompt (no session named anywhere); with the operator key the table shows both
    sessions busy; one session's page shows its turn's text growing as it streams;
    Interrupt (confirmed) ends that turn, its client sees the stream fail, and the
    table shows the session idle while the other is still busy."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    server = keyed_server
    with anthropic.Anthropic(base_url=server.url, api_key=USER_KEY, max_retries=0) as client:
        assert ask(client, "dash-a", "hello") == "echo: hello"  # a first-token figure
    turns = [StreamedTurn(server.url, "dash-a"), StreamedTurn(server.url, "dash-b")]
    try:
        wait_until(lambda: busy_sessions(server) == 2, 90, "both sessions to be busy")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                timeout=TIMEOUT_MS,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.set_default_timeout(TIMEOUT_MS)
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))

                # No key: the login prompt, and nothing of the server's state.
                page.goto(f"{server.url}/dashboard")
                page.wait_for_selector("#login", state="visible")
                assert page.is_hidden("#overview-view")
                assert page.locator("#sessions tbody tr").count() == 0
                assert "dash-a" not in page.content()

                # The operator key: both sessions busy in the table.
                page.fill("#key", OPERATOR_KEY)
                page.click("#login-form button[type=submit]")
                row_a = f'tr[data-address="{OWNER}/dash-a"]'
                row_b = f'tr[data-address="{OWNER}/dash-b"]'
                page.wait_for_selector(f'{row_a}[data-state="busy"]')
                page.wait_for_selector(f'{row_b}[data-state="busy"]')
                assert page.evaluate("sessionStorage.length") == 1
                assert OPERATOR_KEY not in page.url
                ARTIFACT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACT), full_page=True)
                print(f"dashboard screenshot: {ARTIFACT}")

                # One session's page: its turn's text appears as it streams.
                page.click(f"{row_a} a")
                page.wait_for_selector("#session-view", state="visible")
                # (Playwright polls from here: the page's CSP forbids its eval.)
                live = page.locator(".live-text").first
                expect(live).to_have_text(re.compile(r".{5,}"), timeout=TIMEOUT_MS)
                seen = live.text_content() or ""
                expect(live).to_have_text(re.compile(re.escape(seen) + r".+"), timeout=TIMEOUT_MS)

                # Interrupt from the page, confirming the dialog.
                page.once("dialog", lambda dialog: dialog.accept())
                page.click("#interrupt")
                page.wait_for_selector("#action-result:text('interrupted')")
                page.wait_for_selector(".turn.failed")
                turns[0].join(60)

                # Back to the table: the interrupted session is idle, the other busy.
                page.click("text=all sessions")
                page.wait_for_selector(f'{row_a}[data-state="idle"]')
                assert page.get_attribute(row_b, "data-state") == "busy"
                assert errors == []
            finally:
                browser.close()
    finally:
        for streamed in turns:
            if not streamed.completed and streamed.error is None:
                httpx.post(
                    f"{server.url}/v1/sessions/{streamed.session_id}/interrupt",
                    headers={"x-api-key": USER_KEY},
                    timeout=10,
                )
        for streamed in turns:
            streamed.join(60)

    interrupted = turns[0]
    assert not interrupted.completed
    assert isinstance(interrupted.error, anthropic.APIStatusError), interrupted.error
    assert "interrupt" in str(interrupted.error), interrupted.error
    assert interrupted.text, "the client saw the turn stream before it was interrupted"


def test_the_page_needs_no_key_on_a_server_without_keys(tmp_path):
    """On a loopback server without API keys the page shows the overview at once, with
    no login prompt (it tries without a key first). No CLI runs: no warm pool, no turn."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    server = start_server(
        tmp_path / "state", tmp_path / "server.log", env={"CCACTORS_WARM_POOL_SIZE": "0"}
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                timeout=TIMEOUT_MS,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"{server.url}/dashboard")
                page.wait_for_selector("#no-sessions", state="visible")
                expect(page.locator("#cards")).to_contain_text("Live CLIs")
                assert page.is_hidden("#login")
                assert page.is_hidden("#logout")
            finally:
                browser.close()
        assert server.cli_pids() == set()
    finally:
        code = stop_server(server)
    assert code == 0, server.log()
