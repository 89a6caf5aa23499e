"""The OpenAPI 3.1 document of the server (``GET /openapi.json``), from the routes
themselves.

Each route declares what it takes and answers next to its definition, with the
``documented`` decorator (or says why it is not an API operation, with
``not_documented``), both in ``app.http._route_docs``; ``openapi_document`` walks the
application's URL map and builds the document from those declarations and the JSON
schemas of the pydantic models they name: the request models that validate the bodies
and query strings, and the response shapes of ``app.http._shapes``. Nothing in the
document is written by hand but prose.

Format: the OpenAPI Specification 3.1.0 (its JSON Schema dialect is JSON Schema 2020-12,
which pydantic writes). What OpenAPI cannot say is said as precisely as it allows:

* Server-sent events are a ``text/event-stream`` response (a string) whose
  ``x-events`` names each event and, where ccactors defines it, the schema of its data.
* The WebSocket is a ``GET`` answered ``101 Switching Protocols``; its messages are in
  ``x-websocket`` (``client``: the messages a client sends, ``server``: the frames it
  gets), with their schemas in ``components``.

Why not quart-schema: it cannot describe a response that is JSON or an event stream
depending on the request, nor a WebSocket, and it takes over the app's response
conversion and JSON provider; what it would add here is the walk over the URL map.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import TypeAdapter
from quart import Quart

from actors import SESSION_ID_PATTERN

from ..security._auth import PRINCIPAL_BYTES
from ._route_docs import ATTRIBUTE, ERROR_TEXT, OPERATOR_403, Doc
from ._shapes import AnthropicError, OpenAIError

JSON = "application/json"
SSE = "text/event-stream"
OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"

SESSION_ID_SCHEMA = {"type": "string", "pattern": f"^{SESSION_ID_PATTERN.pattern}$"}
# A dashboard address's owner: a principal, or "-" for the empty one (auth off).
OWNER_SCHEMA = {"type": "string", "pattern": f"^([0-9a-f]{{{2 * PRINCIPAL_BYTES}}}|-)$"}
PATH_SCHEMAS = {"session_id": SESSION_ID_SCHEMA, "owner": OWNER_SCHEMA}

REQUEST_HEADERS: dict[str, dict[str, Any]] = {
    "X-Session-ID": {
        "description": "The session this request belongs to (first of: this header, "
        "`X-Claude-Code-Session-Id`, `metadata.user_id`, `metadata.session_id`); "
        "without one, the conversation's lineage chooses.",
        "schema": SESSION_ID_SCHEMA,
    },
    "X-Claude-Code-Session-Id": {
        "description": "The session id Claude Code sends, when it is the client.",
        "schema": SESSION_ID_SCHEMA,
    },
    "X-Request-ID": {
        "description": "A request id of the client's (echoed as `request-id`; "
        "`^[A-Za-z0-9._:-]{1,128}$`, else a new one is made).",
        "schema": {"type": "string"},
    },
}

RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Session-ID": {
        "description": "The session that served the turn (server-made `conv_...` "
        "when the request named none).",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}

TAGS = [
    {"name": "Anthropic", "description": "Anthropic Messages API."},
    {"name": "OpenAI", "description": "OpenAI Chat Completions API."},
    {"name": "Sessions", "description": "The management API: a caller's sessions."},
    {"name": "Dashboard", "description": "The operator's dashboard: its page and data."},
    {"name": "Service", "description": "Health, metrics, this document."},
]

SECURITY_SCHEMES = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "An API key (`CCACTORS_API_KEYS`, `CCACTORS_API_KEY_HASHES_FILE`); "
        "operator routes need an operator key (`CCACTORS_ADMIN_API_KEYS`...). Without "
        "any key configured (loopback only), no key is needed.",
    },
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The same key as `Authorization: Bearer <key>`.",
    },
}

INFO_DESCRIPTION = """\
Claude Code as a multi-session network service: the Anthropic Messages API, the OpenAI
Chat Completions API, a WebSocket per session, and a management API for sessions.

Every response carries `request-id`. Every request is refused with `421` if its `Host`
is not this server's and with `403` if it comes from a web page whose `Origin` is not
allowed (`CCACTORS_ALLOWED_HOSTS`, `CCACTORS_ALLOWED_ORIGINS`). Errors are Anthropic's
error JSON, except on the OpenAI routes (`/v1/chat/completions`, `/v1/models`), where
they are OpenAI's.
"""


def error_statuses(doc: Doc, method: str, params: Iterable[str]) -> dict[int, str]:
    """The error statuses of an operation, each with when: those of every request (403,
    421), of its auth (401; 403 for operator routes), of a JSON body (400, 408, 413,
    415), of a session id in its path (400), and its own ``refusals``. Not a checkpoint."""
    statuses = {403: ERROR_TEXT[403], 421: ERROR_TEXT[421]}
    if doc.auth != "open":
        statuses[401] = ERROR_TEXT[401]
    if doc.auth == "operator":
        statuses[403] = OPERATOR_403
    if doc.body is not None:
        for status in (400, 408, 413, 415):
            statuses[status] = ERROR_TEXT[status]
    if doc.query is not None or any(p in ("session_id", "owner") for p in params):
        statuses[400] = ERROR_TEXT[400]
    statuses.update(doc.refusals)
    return dict(sorted(statuses.items()))


class _Schemas:
    """The document's ``components.schemas``: every model named, by its title."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, kind: Any, mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        """A schema for ``kind``: a ``$ref`` to its component (added, with the
        components it refers to), or the schema itself for a type with no name."""
        schema = TypeAdapter(kind).json_schema(ref_template=REF, mode=mode)
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        name = schema.get("title")
        if name and schema.get("type") == "object":
            self._add(name, schema)
            return {"$ref": REF.format(model=name)}
        return schema

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        if self.components.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are named {name!r}")

    def event(self, kind: Any, name: str) -> dict[str, Any]:
        """The schema of a session event's JSON (``app.wire._events``): the dataclass's
        fields and its ``type``."""
        if dataclasses.is_dataclass(kind):
            schema = TypeAdapter(kind).json_schema(ref_template=REF, mode="serialization")
            for ref, definition in schema.pop("$defs", {}).items():
                self._add(ref, definition)
            schema["properties"] = {"type": {"const": name}, **schema["properties"]}
            schema["required"] = ["type", *schema.get("required", [])]
            self._add(schema["title"], schema)
            return {"$ref": REF.format(model=schema["title"])}
        return self.of(kind, "serialization")


def _path(rule: str) -> tuple[str, list[str]]:
    """A werkzeug rule as an OpenAPI path, and its parameters' names."""
    names = re.findall(r"<(?:[^:>]*:)?([^>]+)>", rule)
    return re.sub(r"<(?:[^:>]*:)?([^>]+)>", r"{\1}", rule), names


def _responses(doc: Doc, method: str, params: list[str], schemas: _Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for reply in doc.replies:
        content: dict[str, Any] = {}
        if reply.model is not None:
            content[JSON] = {"schema": schemas.of(reply.model, "serialization")}
        if reply.events is not None:
            events = {
                name: None if kind is None else schemas.event(kind, name)
                for name, kind in reply.events.items()
            }
            content[SSE] = {"schema": _event_schema(events), "x-events": events}
        for media in reply.media:
            content[media] = {"schema": {"type": "string"}}
        response: dict[str, Any] = {"description": reply.description}
        if content:
            response["content"] = content
        if reply.headers:
            response["headers"] = {name: RESPONSE_HEADERS[name] for name in reply.headers}
        responses[str(reply.status)] = response
    error = AnthropicError if doc.errors == "anthropic" else OpenAIError
    for status, text in error_statuses(doc, method, params).items():
        if str(status) in responses:
            continue
        response = {
            "description": text,
            "content": {JSON: {"schema": schemas.of(error, "serialization")}},
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": RESPONSE_HEADERS["Retry-After"]}
        responses[str(status)] = response
    return responses


def _parameters(doc: Doc, params: list[str], schemas: _Schemas) -> list[dict[str, Any]]:
    parameters = []
    for name in params:
        schema = PATH_SCHEMAS.get(name, {"type": "string"})
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": doc.params.get(name, ""),
                "schema": schema,
            }
        )
    if doc.query is not None:
        query = TypeAdapter(doc.query).json_schema(ref_template=REF)
        required = set(query.get("required", ()))
        for name, schema in query["properties"].items():
            description = schema.pop("description", "")
            schema = _without_null(schema)
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "description": description,
                    "schema": schema,
                }
            )
    for name in doc.headers:
        parameters.append(
            {"name": name, "in": "header", "required": False, **REQUEST_HEADERS[name]}
        )
    return parameters


def _event_schema(events: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The schema of one event of a stream (as schemathesis reads ``text/event-stream``
    schemas, and OpenAPI 3.2's ``itemSchema`` means them): its ``event`` name (absent
    for ``message``) and its ``data``, JSON of the event's schema where known."""
    options = []
    for name, schema in events.items():
        data: dict[str, Any] = {"type": "string", "contentMediaType": JSON}
        if schema is not None:
            data["contentSchema"] = schema
        options.append({"properties": {"event": {"const": name}, "data": data}})
    return {
        "type": "object",
        "properties": {
            "event": {"type": "string", "default": "message"},
            "data": {"type": "string"},
            "id": {"type": "string"},
        },
        "required": ["data"],
        "oneOf": options,
    }


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without pydantic's ``null`` alternative and title: a
    query string cannot say null; leaving the parameter out does."""
    schema = {k: v for k, v in schema.items() if k != "title"}
    if schema.get("default", ...) is None:
        del schema["default"]
    options = [o for o in schema.pop("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    return schema


def _operation(
    doc: Doc, endpoint: str, method: str, params: list[str], schemas: _Schemas
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_") + ("" if method == "get" else f"_{method}"),
        "summary": doc.summary,
        "tags": [doc.tag],
    }
    if doc.description:
        operation["description"] = doc.description
    if parameters := _parameters(doc, params, schemas):
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": schemas.of(doc.body, "validation")}},
        }
        if doc.examples:
            operation["requestBody"]["content"][JSON]["examples"] = {
                name: {"value": value} for name, value in doc.examples.items()
            }
    operation["responses"] = _responses(doc, method, params, schemas)
    if doc.auth == "open":
        operation["security"] = []
    else:
        roles = ["operator"] if doc.auth == "operator" else []
        operation["security"] = [{"ApiKey": roles}, {"Bearer": roles}]
    if doc.websocket is not None:
        operation["x-websocket"] = {
            side: [
                schemas.of(kind, "validation" if side == "client" else "serialization")
                if not dataclasses.is_dataclass(kind)
                else schemas.event(kind, _event_name(kind))
                for kind in kinds
            ]
            for side, kinds in doc.websocket.items()
        }
    return operation


def _event_name(kind: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()


def documented_rules(app: Quart) -> Iterable[tuple[str, str, str, Doc]]:
    """Every documented (rule, method, endpoint, doc) of ``app``, HEAD and OPTIONS left
    out (Quart answers them for every route). Not a checkpoint."""
    for rule in app.url_map.iter_rules():
        function = app.view_functions[rule.endpoint]
        doc = getattr(function, ATTRIBUTE, None)
        if doc is None:
            continue
        methods = (
            ["get"]
            if rule.websocket
            else sorted(m.lower() for m in rule.methods or () if m not in ("HEAD", "OPTIONS"))
        )
        for method in methods:
            yield rule.rule, method, rule.endpoint, doc


def openapi_document(app: Quart, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s documented routes.

    Args:
        app: the application, with every route registered.
        version: the server's version, for ``info.version``.

    Returns:
        The document, as JSON-ready dicts. Routes with neither ``documented`` nor
        ``not_documented`` are left out (``tests/unit/test_openapi.py`` fails on them).

    Not a checkpoint.
    """
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, endpoint, doc in documented_rules(app):
        path, params = _path(rule)
        paths.setdefault(path, {})[method] = _operation(doc, endpoint, method, params, schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ccactors",
            "version": version,
            "description": INFO_DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": TAGS,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
