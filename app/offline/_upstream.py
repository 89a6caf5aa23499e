"""An offline Anthropic-compatible upstream for the ``claude`` CLI.

A small HTTP server that speaks enough of the Anthropic Messages API (as documented by
Anthropic: ``POST /v1/messages`` with its streaming events and error bodies, and
``POST /v1/messages/count_tokens``) for the real ``claude`` CLI to run against it
through ``ANTHROPIC_BASE_URL``: no network, no model. For demos, tests and CI.

Every request is answered by the same deterministic logic, driven by directives in the
*latest user text* (see :func:`latest_user_text`, :func:`parse_directives`):

``[[count]]``
    The reply is ``count=N``, N being the number of user messages in the request whose
    text contains ``[[count]]``. Without it the reply is ``echo: <latest user text>``,
    directives included, verbatim.
``[[blocks]]``
    The reply is ``blocks=T1,T2,...``: the types of the content blocks of the user
    message holding the directive, in order (``text`` blocks holding only what the CLI
    adds, see :func:`latest_user_text`, left out), e.g. ``blocks=image,document,text``.
``[[model]]``
    The reply is ``model=<the request's model field>``: the model the CLI asked for.
``[[system]]``
    The reply is ``system=<N> chars ending: <tail>``: the length of the request's system
    prompt (a string, or its text blocks joined by blank lines) and its last 100
    characters. With ``[[model]]`` too, both, ``model=...`` first.
``[[media]]``
    The reply is ``images=N documents=M``: how many ``image`` and ``document`` blocks
    (any source: base64, URL, text) the user message holding the directive has, as the
    CLI sent it (so an image the CLI could not read, and sent as a text note, is not
    counted).
``[[chunks=N]]``
    Stream the reply as exactly N ``text_delta`` events (default 1): N contiguous
    pieces whose lengths differ by at most one, after padding a reply shorter than N
    characters with ``.`` to N characters.
``[[chunk_delay=S]]``
    Sleep S seconds between two text deltas.
``[[delay_first=S]]``
    Sleep S seconds before sending anything: before ``message_start`` when streaming
    (the headers go out at once, as with the real API), else before the headers.
``[[stall_after=N]]``
    Send N text deltas, then go silent with the connection open until the client goes
    away (without ``[[chunks=...]]`` it implies ``chunks=N+1``). A non-streaming
    request never gets its response.
``[[error=STATUS]]``
    Answer HTTP STATUS (400 to 599) with an Anthropic error body.
``[[tool=NAME:{"json": "input"}]]``
    Answer with one ``tool_use`` block calling NAME with that input (stop_reason
    ``tool_use``), so Claude Code runs (or asks permission for) a real tool. When the
    request's last message carries the ``tool_result``, the answer is the text
    ``tool result: <content>`` (``tool error: ...`` if it failed or was denied).

Unknown ``[[name]]`` tokens are ignored; a known directive with a bad value is a 400.
A non-streaming reply is always one text block.

Structured-output requests (``output_config.format`` of type ``json_schema``; the CLI
sends one per turn to title the session, unless
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` is set) get a JSON value that fits the
schema, every string in it being the reply text, and ignore the timing, stall and error
directives: those address the conversation's turn, not its side requests.

Usage is a deterministic estimate: ``input_tokens`` is the length of the request's
``messages`` as compact JSON in characters // 4 + 1; ``output_tokens`` is the reply's
length in characters // 4 + 1.
"""

from __future__ import annotations

import json
import logging
import uuid

import hypercorn.config
import hypercorn.trio
import quart
import quart_trio
import trio
from werkzeug.exceptions import HTTPException

from ..wire import _json
from ..wire._anthropic import error_body
from ._directives import Directives, JSONObject, parse_directives
from ._reading import (
    count_input_tokens,
    fit_schema,
    latest_user_text,
    output_schema,
    reply_text,
    request_text,
    tool_results,
)
from ._replies import Reply, stream_reply, tool_use_block

__all__ = [
    "MAX_REQUEST_BYTES",
    "Directives",
    "create_upstream_app",
    "latest_user_text",
    "parse_directives",
    "serve_upstream",
]

_LOGGER = logging.getLogger(__name__)
# The most a Messages request may hold (32 MB, as Anthropic documents; Claude Code's
# own constant is 32 MiB).
MAX_REQUEST_BYTES = 32 * 1024 * 1024


def _error_response(status: int, message: str) -> quart.Response:
    response = quart.jsonify(error_body(status, message))
    response.status_code = status
    return response


async def _request_body() -> JSONObject:
    """The request's JSON object with a ``messages`` list; ValueError if it has none."""
    try:
        body = _json.loads(await quart.request.get_data())
    except ValueError:
        raise ValueError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    if not isinstance(body.get("messages"), list):
        raise ValueError("messages: field required and must be a list")
    return body


def _reply_for(body: JSONObject) -> Reply:
    """Decide the answer to a ``/v1/messages`` body; ValueError on a bad directive."""
    messages = body["messages"]
    directives = parse_directives(latest_user_text(messages))
    text = reply_text(messages, directives)
    if not tool_results(messages):
        text = request_text(body, directives) or text
    schema = output_schema(body)
    if schema is not None:
        text = json.dumps(fit_schema(schema, text), ensure_ascii=False)
        directives = Directives()
    answering_tool = bool(tool_results(messages))
    return Reply(
        model=str(body.get("model") or "claude-offline"),
        text=text,
        directives=directives,
        input_tokens=count_input_tokens(messages),
        stream=body.get("stream") is True,
        tool_call=None if answering_tool or schema is not None else directives.tool,
    )


async def _messages() -> quart.Response:
    try:
        reply = _reply_for(await _request_body())
    except ValueError as error:
        return _error_response(400, str(error))
    directives = reply.directives
    headers = {"request-id": f"req_{uuid.uuid4().hex}"}
    if directives.error is not None:
        await trio.sleep(directives.delay_first)
        return _error_response(directives.error, f"[[error={directives.error}]] requested")
    if reply.stream:
        response = quart.Response(
            stream_reply(reply),
            content_type="text/event-stream; charset=utf-8",
            headers={"cache-control": "no-cache", **headers},
        )
        response.timeout = None
        return response
    await trio.sleep(directives.delay_first)
    if directives.stall_after is not None:
        await trio.sleep_forever()
    if reply.tool_call is not None:
        response = quart.jsonify(reply.message([tool_use_block(reply)], "tool_use"))
    else:
        response = quart.jsonify(reply.message([{"type": "text", "text": reply.text}], "end_turn"))
    response.headers.update(headers)
    return response


async def _count_tokens() -> quart.Response:
    try:
        body = await _request_body()
    except ValueError as error:
        return _error_response(400, str(error))
    return quart.jsonify({"input_tokens": count_input_tokens(body["messages"])})


def _http_error(error: HTTPException) -> quart.Response:
    return _error_response(error.code or 500, error.description or "error")


def create_upstream_app() -> quart_trio.QuartTrio:
    """Build the offline upstream's ASGI app.

    Routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``. Query
    parameters and auth headers are ignored. A body over ``MAX_REQUEST_BYTES`` is a
    413, as from the real API. Any other path or method gets the
    matching HTTP error with an Anthropic error body. The app holds no state.

    Returns:
        A fresh QuartTrio app, to be served by hypercorn's trio worker.
    """
    app = quart_trio.QuartTrio(__name__)
    # Anthropic's limit on a Messages request (Quart's default, 16 MiB, would refuse a
    # conversation holding a large PDF that the real API takes).
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.add_url_rule("/v1/messages", view_func=_messages, methods=["POST"])
    app.add_url_rule("/v1/messages/count_tokens", view_func=_count_tokens, methods=["POST"])
    app.register_error_handler(HTTPException, _http_error)
    return app


async def serve_upstream(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the offline upstream over HTTP until cancelled.

    Follows the nursery start protocol: ``base_url = await nursery.start(serve_upstream)``.
    Access logging is off; hypercorn's error log goes to this module's logger.

    Args:
        host: The address to bind, e.g. ``"127.0.0.1"`` or ``"::1"``.
        port: The TCP port to bind; 0 picks a free one.
        task_status: Receives the base URL with the real bound port, e.g.
            ``"http://127.0.0.1:43123"``, once the socket is listening.

    Raises:
        ExceptionGroup: Holding an ``OSError`` if the address cannot be bound (Trio's
            strict exception groups; catch it with ``except* OSError``).

    Cancellation stops the server and closes every open connection, streams included.
    """
    config = hypercorn.config.Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = _LOGGER
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(hypercorn.trio.serve, create_upstream_app(), config)
        task_status.started(binds[0])
