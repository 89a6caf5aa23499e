"""The server's OpenAPI document outside a running server, and the endpoints reference
page made from it.

``python -m app.http.openapi`` prints the document (JSON), as ``GET /openapi.json``
serves it; ``--markdown`` prints ``docs/reference/endpoints.md`` instead (a test fails
when the committed page differs from it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import trio

from actors import SupervisorConfig, open_supervisor

from .._settings import Settings
from ._app import VERSION, create_app
from ._openapi import openapi_document

REFERENCE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "endpoints.md"
MARKDOWN_COMMAND = "uv run python -m app.http.openapi --markdown > docs/reference/endpoints.md"


def _no_cli(*args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
    raise RuntimeError("the OpenAPI document is built without starting any CLI")


async def build_document() -> dict[str, Any]:
    """The OpenAPI document of an application with the default settings (the document
    does not depend on settings), built over a supervisor that starts no CLI. Creates and
    removes a temporary directory; cancellation leaves nothing behind."""
    with tempfile.TemporaryDirectory(prefix="ccactors-openapi-") as tmp:
        config = SupervisorConfig(workspace_root=Path(tmp))
        async with open_supervisor(config, _no_cli) as supervisor:
            app = create_app(supervisor, Settings(state_dir=Path(tmp)))
            return openapi_document(app, VERSION)


# -- The reference page ---------------------------------------------------------------

AUTH = {
    "open": "none",
    "key": "an API key, once keys are configured",
    "operator": "an operator key, once keys are configured",
}


def _auth(operation: dict[str, Any]) -> str:
    security = operation.get("security", [])
    if not security:
        return AUTH["open"]
    return AUTH["operator"] if security[0]["ApiKey"] else AUTH["key"]


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words: ``string``, ``integer (1..100)``, ``Session``..."""
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    bounds = [schema.get(k) for k in ("minimum", "maximum", "minLength", "maxLength")]
    if bounds[0] is not None or bounds[1] is not None:
        kind += f" ({bounds[0] if bounds[0] is not None else ''}..{bounds[1] or ''})"
    if "pattern" in schema:
        kind += f" `{schema['pattern']}`"
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _fields(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", ()))
    lines = ["| field | type | required |", "|---|---|---|"]
    for name, field in schema.get("properties", {}).items():
        lines.append(f"| `{name}` | {_type(field)} | {'yes' if name in required else ''} |")
    return lines


def _operation(path: str, method: str, op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", "", op["summary"] + ".", ""]
    if description := op.get("description"):
        lines += [description, ""]
    lines += [f"Auth: {_auth(op)}.", ""]
    if parameters := op.get("parameters"):
        lines += ["| parameter | in | type | meaning |", "|---|---|---|---|"]
        for p in parameters:
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_type(p['schema'])} | "
                f"{_cell(p.get('description', ''))} |"
            )
        lines.append("")
    if body := op.get("requestBody"):
        ref = body["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[-1]
        lines += [f"Body (`application/json`): `{name}`.", "", *_fields(schemas[name]), ""]
    lines += ["| status | body | when |", "|---|---|---|"]
    for status, response in op["responses"].items():
        content = []
        for media, entry in response.get("content", {}).items():
            shown = _type(entry["schema"]) if media == "application/json" else ""
            if "x-events" in entry:
                shown = "events " + ", ".join(f"`{name}`" for name in entry["x-events"])
            content.append(f"{media} {shown}".strip())
        lines.append(f"| {status} | {'; '.join(content)} | {_cell(response['description'])} |")
    if "x-websocket" in op:
        lines.append("")
        for side, items in op["x-websocket"].items():
            names = ", ".join(_type(item) for item in items)
            lines.append(f"WebSocket messages, {side}: {names}.")
    return [*lines, ""]


def endpoints_markdown(document: dict[str, Any]) -> str:
    """The endpoints reference page (Markdown) of an OpenAPI document: each operation
    by tag, with its auth, parameters, body fields and responses. Not a checkpoint."""
    schemas = document["components"]["schemas"]
    lines = [
        "# Endpoints",
        "",
        "<!-- Generated from the OpenAPI document; do not edit. Remake it with:",
        f"     {MARKDOWN_COMMAND} -->",
        "",
        f"The server describes itself at `GET /openapi.json` (OpenAPI {document['openapi']},"
        " no key needed). This page is made from that document.",
        "",
        document["info"]["description"].strip(),
        "",
    ]
    for tag in document["tags"]:
        lines += [f"## {tag['name']}", "", tag["description"], ""]
        for path, operations in document["paths"].items():
            for method, op in operations.items():
                if tag["name"] in op["tags"]:
                    lines += _operation(path, method, op, schemas)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """``python -m app.http.openapi [--markdown]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the reference page")
    args = parser.parse_args()
    document = trio.run(build_document)
    print(endpoints_markdown(document) if args.markdown else json.dumps(document, indent=2), end="")


if __name__ == "__main__":
    main()
