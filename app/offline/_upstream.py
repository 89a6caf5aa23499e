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

import itertools
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import hypercorn.config
import hypercorn.trio
import quart
import quart_trio
import trio
from werkzeug.exceptions import HTTPException

from ..wire import _json
from ..wire._anthropic import error_body
from ..wire._sse import encode_sse

_LOGGER = logging.getLogger(__name__)

_SYSTEM_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
# What the CLI adds to the next prompt after an interrupt; not typed by the user.
_INTERRUPT_MARKER = re.compile(r"\[Request interrupted by user[^\]]*\]")
# What the CLI appends to a prompt holding an image (where it saved it); not typed either.
_IMAGE_MARKER = re.compile(r"\[Image: source: [^\]]*\]")
_DIRECTIVE = re.compile(r"\[\[([a-z_]+)(?:=([^\]]*))?\]\]")
_COUNT_TOKEN = "[[count]]"
_DAY_S = 86_400.0
# Directives with a value: name -> (type, lowest, highest allowed value).
_DIRECTIVE_RANGES: dict[str, tuple[type[float], float, float]] = {
    "chunks": (int, 1, 100_000),
    "stall_after": (int, 0, 100_000),
    "chunk_delay": (float, 0.0, _DAY_S),
    "delay_first": (float, 0.0, _DAY_S),
    "error": (int, 400, 599),
}

_JSONObject = dict[str, Any]


@dataclass(frozen=True)
class Directives:
    """The directives found in one user text; see the module docstring for meanings."""

    count: bool = False
    blocks: bool = False
    chunks: int | None = None
    chunk_delay: float = 0.0
    delay_first: float = 0.0
    stall_after: int | None = None
    error: int | None = None
    tool: tuple[str, dict[str, Any]] | None = None  # (name, input) to call

    @property
    def delta_count(self) -> int:
        """How many text deltas the streamed reply has."""
        if self.chunks is not None:
            return self.chunks
        if self.stall_after is not None:
            return self.stall_after + 1
        return 1


def _parse_value(name: str, value: str | None, kind: type[float], low: float, high: float) -> Any:
    try:
        number = kind(value or "")
    except ValueError:
        raise ValueError(f"[[{name}=...]] needs a number, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"[[{name}={value}]] is outside {low}..{high}")
    return number


def parse_directives(text: str) -> Directives:
    """Parse the ``[[name]]`` / ``[[name=value]]`` directives in a user text.

    Unknown names are ignored. When a directive appears twice, the last one wins.

    Args:
        text: The latest user text.

    Returns:
        The directives found; defaults for the ones that are absent.

    Raises:
        ValueError: A known directive has a missing or malformed value.
    """
    found: dict[str, Any] = {}
    for match in _DIRECTIVE.finditer(text):
        name, value = match.group(1), match.group(2)
        if name in ("count", "blocks"):
            found[name] = True
        elif name == "tool":
            found["tool"] = _parse_tool(value)
        elif name in _DIRECTIVE_RANGES:
            found[name] = _parse_value(name, value, *_DIRECTIVE_RANGES[name])
    return Directives(**found)


def _parse_tool(value: str | None) -> tuple[str, dict[str, Any]]:
    """``NAME:{json object}`` (or just ``NAME``) -> (name, input). ValueError if bad."""
    name, _, raw = (value or "").partition(":")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"[[tool=...]] needs a tool name, got {value!r}")
    try:
        tool_input = _json.loads(raw) if raw else {}
    except ValueError:
        raise ValueError(f"[[tool={name}:...]]: the input is not JSON") from None
    if not isinstance(tool_input, dict):
        raise ValueError(f"[[tool={name}:...]]: the input must be a JSON object")
    return name, tool_input


def _tool_results(messages: Sequence[object]) -> list[dict[str, Any]]:
    """The ``tool_result`` blocks of the last message, if it is the user's."""
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return []
    content = last.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    status = "error" if block.get("is_error") else "result"
    return f"tool {status}: {content}"


def _user_text(message: object) -> str | None:
    """The prompt a user typed in one message: its last text block that still has text
    once ``<system-reminder>`` sections and the CLI's ``[Request interrupted by user]``
    and ``[Image: source: <path>]`` markers are removed.

    The CLI puts its reminders in blocks before the prompt block, and merges a user
    message whose turn failed with the next one; the last block is the newest prompt.

    Args:
        message: One entry of a Messages API ``messages`` list. Content may be a string
            or a list of blocks; only ``text`` blocks count (``tool_result`` and other
            blocks contribute nothing).

    Returns:
        That text, stripped (``""`` if none), or ``None`` if ``message`` is not a
        ``user`` message.
    """
    if not isinstance(message, dict) or message.get("role") != "user":
        return None
    content = message.get("content")
    if isinstance(content, str):
        texts = [content]
    elif isinstance(content, list):
        texts = [
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        ]
    else:
        texts = []
    cleaned = (_typed(text) for text in texts)
    return next((text for text in reversed(list(cleaned)) if text), "")


def _typed(text: str) -> str:
    """A text block's text without what the CLI adds (reminders, interrupt and image
    markers), stripped."""
    for added in (_SYSTEM_REMINDER, _INTERRUPT_MARKER, _IMAGE_MARKER):
        text = added.sub("", text)
    return text.strip()


def latest_user_text(messages: Sequence[object]) -> str:
    """The text of the most recent user message that has any; see :func:`_user_text`.

    A trailing user message that holds only ``tool_result`` blocks has empty text, so
    the reply is driven by the prompt before it.

    Args:
        messages: A Messages API ``messages`` list.

    Returns:
        That text, or ``""`` if no user message has text.
    """
    for message in reversed(messages):
        if text := _user_text(message):
            return text
    return ""


def _block_types(messages: Sequence[object]) -> list[str]:
    """The content block types of the latest user message with text (see
    :func:`latest_user_text`), reminder-only text blocks left out."""
    for message in reversed(messages):
        if _user_text(message):
            content = message["content"]  # type: ignore[index]
            if isinstance(content, str):
                return ["text"]
            return [
                str(block.get("type"))
                for block in content
                if isinstance(block, dict)
                and not (block.get("type") == "text" and not _typed(str(block.get("text", ""))))
            ]
    return []


def _reply_text(messages: Sequence[object], directives: Directives) -> str:
    if results := _tool_results(messages):
        return " | ".join(_result_text(block) for block in results)
    if directives.blocks:
        return f"blocks={','.join(_block_types(messages))}"
    if directives.count:
        texts = (_user_text(message) for message in messages)
        return f"count={sum(1 for text in texts if text and _COUNT_TOKEN in text)}"
    return f"echo: {latest_user_text(messages)}"


def _output_schema(body: _JSONObject) -> _JSONObject | None:
    """The JSON schema the request asks the reply to follow, if any."""
    output_config = body.get("output_config")
    if not isinstance(output_config, dict):
        return None
    output_format = output_config.get("format")
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        return None
    schema = output_format.get("schema")
    return schema if isinstance(schema, dict) else {}


def _fit_schema(schema: _JSONObject, text: str) -> Any:
    """A JSON value of ``schema``'s shape whose strings are all ``text``."""
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {
            name: _fit_schema(sub, text)
            for name, sub in properties.items()
            if isinstance(sub, dict)
        }
    return {"array": [], "boolean": False, "integer": 0, "number": 0, "null": None}.get(kind, text)


def _split(text: str, pieces: int) -> list[str]:
    """Cut ``text`` (padded with ``.`` to at least ``pieces`` chars) into ``pieces`` parts."""
    text = text.ljust(pieces, ".")
    size, extra = divmod(len(text), pieces)
    bounds = [index * size + min(index, extra) for index in range(pieces + 1)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def _estimate_tokens(characters: int) -> int:
    return characters // 4 + 1


def _input_tokens(messages: Sequence[object]) -> int:
    return _estimate_tokens(len(json.dumps(messages, separators=(",", ":"))))


def _error_response(status: int, message: str) -> quart.Response:
    response = quart.jsonify(error_body(status, message))
    response.status_code = status
    return response


@dataclass(frozen=True)
class _Reply:
    """Everything needed to answer one ``/v1/messages`` request."""

    model: str
    text: str
    directives: Directives
    input_tokens: int
    stream: bool
    tool_call: tuple[str, dict[str, Any]] | None = None  # answer with this tool_use

    def message(self, content: list[_JSONObject], stop_reason: str | None) -> _JSONObject:
        """The Message object with ``content``; ``stop_reason`` is None while streaming."""
        return {
            "id": f"msg_{uuid.uuid4().hex}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        }

    @property
    def output_tokens(self) -> int:
        return _estimate_tokens(len(self.text))


def _frame(event: str, **fields: Any) -> bytes:
    return encode_sse(event, {"type": event, **fields})


def _tool_use_block(reply: _Reply) -> _JSONObject:
    assert reply.tool_call is not None
    name, tool_input = reply.tool_call
    return {
        "type": "tool_use",
        "id": f"toolu_{uuid.uuid4().hex[:24]}",
        "name": name,
        "input": tool_input,
    }


async def _stream_tool_use(reply: _Reply) -> AsyncIterator[bytes]:
    """A streamed reply that is one ``tool_use`` block (stop_reason ``tool_use``)."""
    block = _tool_use_block(reply)
    yield _frame("message_start", message=reply.message([], None))
    yield _frame("content_block_start", index=0, content_block={**block, "input": {}})
    delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    yield _frame("content_block_delta", index=0, delta=delta)
    yield _frame("content_block_stop", index=0)
    yield _frame(
        "message_delta",
        delta={"stop_reason": "tool_use", "stop_sequence": None},
        usage={"output_tokens": reply.output_tokens},
    )
    yield _frame("message_stop")


async def _stream(reply: _Reply) -> AsyncIterator[bytes]:
    """Anthropic's streaming events for ``reply``; cancelled when the client goes away."""
    directives = reply.directives
    await trio.sleep(directives.delay_first)
    if reply.tool_call is not None:
        async for frame in _stream_tool_use(reply):
            yield frame
        return
    yield _frame("message_start", message=reply.message([], None))
    yield _frame("ping")
    yield _frame("content_block_start", index=0, content_block={"type": "text", "text": ""})
    for number, piece in enumerate(_split(reply.text, directives.delta_count)):
        if number == directives.stall_after:
            await trio.sleep_forever()
        if number:
            await trio.sleep(directives.chunk_delay)
        yield _frame("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    if directives.stall_after is not None:
        await trio.sleep_forever()
    yield _frame("content_block_stop", index=0)
    yield _frame(
        "message_delta",
        delta={"stop_reason": "end_turn", "stop_sequence": None},
        usage={"output_tokens": reply.output_tokens},
    )
    yield _frame("message_stop")


async def _request_body() -> _JSONObject:
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


def _reply_for(body: _JSONObject) -> _Reply:
    """Decide the answer to a ``/v1/messages`` body; ValueError on a bad directive."""
    messages = body["messages"]
    directives = parse_directives(latest_user_text(messages))
    text = _reply_text(messages, directives)
    schema = _output_schema(body)
    if schema is not None:
        text = json.dumps(_fit_schema(schema, text), ensure_ascii=False)
        directives = Directives()
    answering_tool = bool(_tool_results(messages))
    return _Reply(
        model=str(body.get("model") or "claude-offline"),
        text=text,
        directives=directives,
        input_tokens=_input_tokens(messages),
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
            _stream(reply),
            content_type="text/event-stream; charset=utf-8",
            headers={"cache-control": "no-cache", **headers},
        )
        response.timeout = None
        return response
    await trio.sleep(directives.delay_first)
    if directives.stall_after is not None:
        await trio.sleep_forever()
    if reply.tool_call is not None:
        response = quart.jsonify(reply.message([_tool_use_block(reply)], "tool_use"))
    else:
        response = quart.jsonify(reply.message([{"type": "text", "text": reply.text}], "end_turn"))
    response.headers.update(headers)
    return response


async def _count_tokens() -> quart.Response:
    try:
        body = await _request_body()
    except ValueError as error:
        return _error_response(400, str(error))
    return quart.jsonify({"input_tokens": _input_tokens(body["messages"])})


def _http_error(error: HTTPException) -> quart.Response:
    return _error_response(error.code or 500, error.description or "error")


def create_upstream_app() -> quart_trio.QuartTrio:
    """Build the offline upstream's ASGI app.

    Routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``. Query
    parameters and auth headers are ignored. Any other path or method gets the
    matching HTTP error with an Anthropic error body. The app holds no state.

    Returns:
        A fresh QuartTrio app, to be served by hypercorn's trio worker.
    """
    app = quart_trio.QuartTrio(__name__)
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
