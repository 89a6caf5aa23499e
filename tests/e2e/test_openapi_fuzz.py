"""schemathesis against a live server, from the document it serves (``/openapi.json``).

A real ``ccactors serve --offline`` (the real CLI, the offline upstream) with API keys
on; schemathesis generates requests for every operation of both HTTP APIs, the
management API, the dashboard's data routes and the service routes, sends them with the
operator key, and checks each response: no 5xx, a documented status, a documented
content type, a body matching its documented schema, documented headers, and that an
operation declaring a key answers 401 without one.

Bounds, so the test stays within about two minutes on 2 cores:

* ``MAX_EXAMPLES`` generated requests per operation (plus schemathesis' explicit and
  boundary cases);
* every turn carries ``X-Session-ID: fuzz`` (the generated session headers and body ids
  are replaced), so the turns of both APIs go to one session, and
  ``max_live_sessions=2``, ``warm_pool_size=0`` bound the CLIs; the test asserts how
  many were started;
* excluded: the never-ending event streams (``GET /v1/sessions/{session_id}/events``,
  ``GET /v1/dashboard/stream``, ``GET /v1/dashboard/sessions/{owner}/{session_id}/events``:
  a 200 never ends) and the WebSocket route (not HTTP; tests/e2e/test_websocket.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from app.http.openapi import build_document

from .conftest import SHORT_TIMEOUTS, Server, start_server, stop_server

pytestmark = pytest.mark.e2e

USER_KEY = "fuzz-user-key"
OPERATOR_KEY = "fuzz-operator-key"
SESSION = "fuzz"
MAX_EXAMPLES = 8
MAX_CLI_STARTS = 6
NEVER_ENDING = (
    "/v1/sessions/{session_id}/events",
    "/v1/dashboard/stream",
    "/v1/dashboard/sessions/{owner}/{session_id}/events",
)
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.ignored_auth,
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: keys on, few CLIs, short deadlines."""
    root = tmp_path_factory.mktemp("fuzz")
    env = {
        **SHORT_TIMEOUTS,
        "CCACTORS_API_KEYS": f'["{USER_KEY}"]',
        "CCACTORS_ADMIN_API_KEYS": f'["{OPERATOR_KEY}"]',
        "CCACTORS_MAX_LIVE_SESSIONS": "2",
        "CCACTORS_WARM_POOL_SIZE": "0",
        "CCACTORS_LIVE_SLOT_WAIT_S": "2",
    }
    server = start_server(root / "state", root / "server.log", env=env)
    try:
        yield server
    finally:
        code = stop_server(server)
    assert code == 0, server.log()


# The document the server serves is built by the same code from the same routes without
# a server (``app.http.openapi``); the test checks the two are equal.
DOCUMENT = trio.run(build_document)
schema = (
    schemathesis.openapi.from_dict(DOCUMENT)
    .exclude(path=list(NEVER_ENDING))
    .exclude(path_regex=r"/ws$")
)


def cli_starts(server: Server) -> int:
    metrics = httpx.get(
        f"{server.url}/metrics", headers={"x-api-key": OPERATOR_KEY}, timeout=10
    ).text
    match = re.search(r"^ccactors_cli_spawns_total (\S+)$", metrics, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_server_answers_as_its_document_says(case, fuzzed: Server) -> None:
    """Every generated request gets a documented answer, never a 5xx (but a 503 or
    504 the document names for a turn the few CLIs could not take), and the few CLIs
    allowed are not exceeded."""
    if case.headers:
        for name in ("X-Session-ID", "X-Claude-Code-Session-Id"):
            case.headers.pop(name, None)
    headers = {"x-api-key": OPERATOR_KEY}
    if case.path in ("/v1/messages", "/v1/chat/completions"):
        headers["X-Session-ID"] = SESSION
    with requests.Session() as session:
        case.call_and_validate(fuzzed.url, session, headers=headers, checks=CHECKS, timeout=60)


def test_the_fuzzing_started_few_clis(fuzzed: Server) -> None:
    """Every turn went to one session: the CLIs started stay within the bound (runs
    after the fuzzing, which is earlier in this module)."""
    started = cli_starts(fuzzed)
    assert 1 <= started <= MAX_CLI_STARTS


def test_the_fuzzed_document_is_the_served_one(fuzzed: Server) -> None:
    """What schemathesis read at collection is what the server serves."""
    served = httpx.get(f"{fuzzed.url}/openapi.json", timeout=10).json()
    assert served == DOCUMENT
