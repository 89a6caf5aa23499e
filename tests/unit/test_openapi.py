"""The OpenAPI document (``GET /openapi.json``): valid OpenAPI 3.1, covering every route,
open but held to the Host and Origin rules, and the reference page made from it.

The live server fuzzed from this document is tests/e2e/test_openapi_fuzz.py.
"""

from __future__ import annotations

from openapi_spec_validator import OpenAPIV31SpecValidator
from quart import Quart

from app._settings import Settings
from app.http._openapi import documented_rules
from app.http._route_docs import ATTRIBUTE, SKIPPED
from app.http.openapi import MARKDOWN_COMMAND, REFERENCE_PAGE, build_document, endpoints_markdown

from .serving import open_client

KEYS = {"api_keys": ["user-key"], "admin_api_keys": ["operator-key"]}


def _routes(app: Quart) -> set[tuple[str, str]]:
    """Every (path rule, method) the app answers, HEAD and OPTIONS left out (Quart
    answers them for every route), but for routes marked ``not_documented``."""
    routes = set()
    for rule in app.url_map.iter_rules():
        function = app.view_functions[rule.endpoint]
        assert hasattr(function, ATTRIBUTE) or hasattr(function, SKIPPED), (
            f"{rule.rule} ({rule.endpoint}) is neither documented nor not_documented: "
            "declare it with app.http._route_docs.documented"
        )
        if hasattr(function, SKIPPED):
            continue
        methods = {"GET"} if rule.websocket else set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        routes |= {(rule.rule, method.lower()) for method in methods}
    return routes


async def test_the_served_document_is_valid_openapi_3_1_and_needs_no_key(tmp_path):
    """``/openapi.json`` answers without a key even with keys configured (it holds no
    data), and openapi-spec-validator finds nothing wrong in it."""
    settings = Settings(state_dir=tmp_path, **KEYS)
    async with open_client(tmp_path, settings) as client:
        response = await client.get("/openapi.json")
        document = await response.get_json()
    assert response.status_code == 200
    assert document["openapi"] == "3.1.0"
    errors = [str(error) for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


async def test_the_document_keeps_the_host_and_origin_rules(tmp_path):
    """Open is not unguarded: a foreign Host is 421 and a foreign Origin 403, as for
    every route."""
    async with open_client(tmp_path) as client:
        host = await client.get("/openapi.json", headers={"Host": "evil.example"})
        origin = await client.get("/openapi.json", headers={"Origin": "http://evil.example"})
    assert (host.status_code, origin.status_code) == (421, 403)


async def test_every_route_is_in_the_document(tmp_path):
    """A route added without ``documented`` (or ``not_documented`` with a reason) fails
    here; so does a documented operation the app does not have."""
    async with open_client(tmp_path) as client:
        app = client.app
        document = await (await client.get("/openapi.json")).get_json()
    routes = _routes(app)
    documented = {(rule, method) for rule, method, _, _ in documented_rules(app)}
    assert documented == routes
    in_document = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    as_paths = {(rule.replace("<", "{").replace(">", "}"), method) for rule, method in routes}
    assert in_document == as_paths
    for path, method in in_document:
        operation = document["paths"][path][method]
        assert operation["responses"], f"{method} {path} documents no response"
        assert "security" in operation, f"{method} {path} says nothing of auth"


async def test_operator_routes_and_open_routes_are_documented_as_such(tmp_path):
    """The security of each operation is what the auth hook does: operator routes need
    an operator key, ``/health`` and the document none, the APIs a key."""
    document = await build_document()
    paths = document["paths"]
    operator = [{"ApiKey": ["operator"]}, {"Bearer": ["operator"]}]
    assert paths["/v1/stats"]["get"]["security"] == operator
    assert paths["/metrics"]["get"]["security"] == operator
    assert paths["/v1/dashboard/overview"]["get"]["security"] == operator
    assert paths["/health"]["get"]["security"] == []
    assert paths["/openapi.json"]["get"]["security"] == []
    assert paths["/v1/messages"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    error = paths["/v1/chat/completions"]["post"]["responses"]["400"]
    assert error["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
    error = paths["/v1/messages"]["post"]["responses"]["400"]
    assert error["content"]["application/json"]["schema"]["$ref"].endswith("/AnthropicError")
    body = paths["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/MessagesRequest")  # the validating model


async def test_the_endpoints_reference_page_is_current():
    """docs/reference/endpoints.md is what the document makes of it now."""
    expected = endpoints_markdown(await build_document())
    assert REFERENCE_PAGE.read_text() == expected, f"stale: remake it with `{MARKDOWN_COMMAND}`"
