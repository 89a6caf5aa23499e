"""The OpenAI Chat Completions wire format: ``POST /v1/chat/completions``, ``GET /v1/models``;
requests and the codec here, replies in ``app.wire._openai_replies``.

Formats follow OpenAI's API reference: the Chat Completions request body, the
``chat.completion`` object, the ``chat.completion.chunk`` stream (``data:`` lines with
no event names, ending in ``data: [DONE]``), the model list, and the error body
``{"error": {"message", "type", "param", "code"}}``.

Field policy (docs/reference/openai.md says the same, with reasons). Nothing a request says reaches
the CLI's options: tools and permissions come from server settings only; the model is
switched through Claude Code's control protocol, among names the settings accept.

=====================================  ================================================
honoured                               ``model`` (the turn's model, see
                                       ``app.wire._models``), ``messages`` (text,
                                       images, PDFs), ``stream``,
                                       ``stream_options.include_usage``,
                                       ``metadata.session_id`` (and the session headers)
ignored (accepted, no effect)          ``temperature``, ``top_p``, ``max_tokens``,
                                       ``max_completion_tokens``, ``presence_penalty``,
                                       ``frequency_penalty``, ``seed``, ``user``,
                                       ``parallel_tool_calls``, ``store``,
                                       ``service_tier``, ``reasoning_effort``,
                                       ``verbosity``, ``prediction``, other ``metadata``,
                                       a message's ``name``, unknown fields
rejected (400)                         ``n`` other than 1; ``tools``, ``functions``;
                                       ``tool_choice``/``function_call`` other than
                                       ``"none"``; ``response_format`` other than
                                       ``text``; ``logprobs``, ``top_logprobs``,
                                       ``logit_bias``, ``stop``, ``audio``,
                                       ``web_search_options``; ``modalities`` other than
                                       ``["text"]``; ``stream_options`` without
                                       ``stream``; ``tool``/``function`` messages,
                                       assistant ``tool_calls``; content parts other than
                                       ``text`` (and an assistant's ``refusal``), except
                                       a user message's images and PDFs (below)
=====================================  ================================================

Images and PDFs: a user message's ``image_url`` parts (a ``data:`` URL of a base64 JPEG,
PNG, GIF or WebP image, or an ``https`` URL) and ``file`` parts (``file_data``: a base64
PDF) become Anthropic ``image`` and ``document`` blocks (``media_part``); the pipeline
limits their number and sizes.

Messages: the last one must be the user's, with text or media. ``system`` and ``developer``
messages are instructions (what the pipeline does with them depends on the setting
``client_system``): by default, without a session they head the one-turn prompt; with
one, those after the last assistant message are sent with the new user message (so a
conversation's opening instructions go with its first turn, and the session remembers
them). Thinking is not sent: Chat Completions has no place for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._codec import Message, TurnRequest
from ._media import PDF, MediaPart, base64_image, base64_pdf, url_image
from ._openai_replies import Completion, error_body, error_json, error_type
from ._problems import Problem, RequestError

# Claude model ids ``GET /v1/models`` lists (after ``settings.model``, if set, and before
# the names of ``settings.model_aliases``). Any ``claude-*`` id is accepted, listed or not.
MODEL_IDS = ("claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5")


class ParamError(RequestError):
    """A client mistake about one field: 400, naming it as OpenAI's ``param``.

    ``code`` is ``unsupported_parameter`` (a field this front end cannot honour at all),
    ``unsupported_value`` (only some of its values), or ``None`` (malformed), as OpenAI
    reports them.
    """

    def __init__(self, message: str, *, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


# -- Requests -------------------------------------------------------------------------


class ChatMessage(BaseModel):
    """One entry of ``messages``. Content (a string, a list of parts, or null) is checked
    by ``message_text``, which can name the offending part."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Any = None
    tool_calls: Any = None
    function_call: Any = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``: the fields that are honoured.

    Others are accepted here and either ignored or refused by ``check_supported``.
    """

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# Fields that cannot be honoured at all: any value but null or empty is refused.
UNSUPPORTED_PARAMETERS = {
    "tools": "Claude Code runs its own tools, on the server; client-side tools cannot run",
    "functions": "Claude Code runs its own tools, on the server; client-side tools cannot run",
    "logit_bias": "token biases cannot be applied to Claude Code's answers",
    "stop": "stop sequences cannot be applied to Claude Code's answers",
    "audio": "only text output is supported",
    "web_search_options": "web search is not available",
}

# Fields of which only some values can be honoured: the values allowed.
ALLOWED_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "tool_choice": (None, "none"),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "modalities": (None, ["text"]),
}


def check_supported(body: dict[str, Any]) -> None:
    """Refuse a request whose fields this front end cannot honour (see the module table).

    Raises:
        ParamError: naming the first such field, with code ``unsupported_parameter`` or
            ``unsupported_value``.
    """
    for param, why in UNSUPPORTED_PARAMETERS.items():
        if body.get(param) not in (None, [], {}, ""):
            message = f"Unsupported parameter: {param!r} is not supported here: {why}"
            raise ParamError(message, param=param, code="unsupported_parameter")
    for param, allowed in ALLOWED_VALUES.items():
        if (value := body.get(param)) not in allowed:
            message = (
                f"Unsupported value: {param!r} does not support {json.dumps(value)} here; "
                f"supported: {', '.join(json.dumps(v) for v in allowed[1:])} (or omit it)"
            )
            raise ParamError(message, param=param, code="unsupported_value")
    if body.get("stream_options") is not None and not body.get("stream"):
        message = "stream_options is only allowed when stream is true"
        raise ParamError(message, param="stream_options", code="unsupported_value")


def message_content(
    message: ChatMessage, index: int
) -> tuple[str, tuple[dict[str, Any], ...], list[MediaPart]]:
    """The text of ``messages[index]`` (its string, or its text parts joined by
    newlines), and for a user message its ``image_url`` and ``file`` parts as Anthropic
    blocks with their ``MediaPart``s (``media_part``).

    Raises:
        ParamError: a tool message, tool calls, or a part that is not text (or, in a
            user message, an image or file part that ``media_part`` refuses).
    """
    where = f"messages[{index}]"
    if message.role in ("tool", "function"):
        raise ParamError(
            f"{message.role} messages are not supported: there are no client-side tools",
            param=f"{where}.role",
            code="unsupported_value",
        )
    if message.tool_calls or message.function_call:
        raise ParamError(
            "assistant tool calls are not supported: there are no client-side tools",
            param=f"{where}.tool_calls",
            code="unsupported_parameter",
        )
    if message.content is None or isinstance(message.content, str):
        return message.content or "", (), []
    if not isinstance(message.content, list):
        raise ParamError(
            "content must be a string or a list of content parts", param=f"{where}.content"
        )
    texts, media, parts = [], [], []
    for n, part in enumerate(message.content):
        kind = part.get("type") if isinstance(part, dict) else None
        if message.role == "user" and kind in ("image_url", "file"):
            block, found = media_part(part, f"{where}.content[{n}]")
            media.append(block)
            parts.append(found)
            continue
        field = "refusal" if message.role == "assistant" and kind == "refusal" else "text"
        if kind != field:
            allowed = "text, image_url, file" if message.role == "user" else "text"
            raise ParamError(
                f"content parts of type {kind!r} are not supported here: only {allowed}",
                param=f"{where}.content[{n}].type",
                code="unsupported_value",
            )
        if not isinstance(part.get(field), str):
            raise ParamError(
                f"a {kind} part needs a string {field!r}", param=f"{where}.content[{n}].{field}"
            )
        texts.append(part[field])
    return "\n".join(texts), tuple(media), parts


def media_part(part: dict[str, Any], where: str) -> tuple[dict[str, Any], MediaPart]:
    """An ``image_url`` or ``file`` content part as an Anthropic block (``app.wire._media``).

    ``image_url.url`` is a ``data:`` URL of a base64 image (its media type one Anthropic
    accepts) or an ``https`` URL (passed on for Claude to read). ``file.file_data`` is a
    base64 PDF, as a ``data:application/pdf;base64,`` URL or bare; its ``filename``
    becomes the document's ``title``. Not a checkpoint.

    Raises:
        ParamError: anything else, naming the field (``file.file_id``: there is no file
            store here).
    """
    if part["type"] == "image_url":
        image_url = part.get("image_url")
        url = image_url.get("url") if isinstance(image_url, dict) else None
        field = f"{where}.image_url.url"
        if isinstance(url, str) and url[:5].lower() == "data:":
            media_type, data = data_url(url, field)
            block, size = base64_image(media_type, data, type_field=field, data_field=field)
            return block, MediaPart(field, "image", size, block)
        if isinstance(url, str) and url[:6].lower() != "https:":
            raise ParamError(
                f"{field}: only data: URLs (base64 images) and https URLs are supported",
                param=field,
                code="unsupported_value",
            )
        block = url_image(url, field)
        return block, MediaPart(field, "image", 0, block)
    file = part.get("file")
    file = file if isinstance(file, dict) else {}
    if file.get("file_id") is not None:
        raise ParamError(
            f"{where}.file.file_id: uploaded files are not available here; send file_data",
            param=f"{where}.file.file_id",
            code="unsupported_parameter",
        )
    field = f"{where}.file.file_data"
    data = file.get("file_data")
    if isinstance(data, str) and data[:5].lower() == "data:":
        media_type, data = data_url(data, field)
        if media_type != PDF:
            raise ParamError(
                f"{field}: unsupported file type {media_type!r}; supported: {PDF}",
                param=field,
                code="unsupported_value",
            )
    block, size = base64_pdf(data, data_field=field)
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block, MediaPart(field, "document", size, block)


def data_url(url: str, field: str) -> tuple[str, str]:
    """The media type (lower case) and base64 data of a ``data:`` URL (RFC 2397)
    declared ``;base64``. Not a checkpoint.

    Raises:
        ParamError: no comma, or not base64 (400).
    """
    comma = url.find(",")
    params = url[5:comma].split(";") if comma >= 0 else []
    if len(params) < 2 or params[-1].strip().lower() != "base64":
        raise ParamError(
            f"{field}: a data URL must be data:<media type>;base64,<data>", param=field
        )
    return params[0].strip().lower(), url[comma + 1 :]


def to_messages(request: ChatCompletionRequest) -> tuple[list[Message], list[MediaPart]]:
    """The request's messages as the pipeline's (``system`` and ``developer`` messages
    are instructions), and their media's ``MediaPart``s. Not a checkpoint.

    Raises:
        ParamError: as ``message_content``, for any message.
    """
    messages, parts = [], []
    for i, m in enumerate(request.messages):
        text, media, found = message_content(m, i)
        role = "instructions" if m.role in ("system", "developer") else m.role
        messages.append(Message(role, text.strip(), media))
        parts += found
    return messages, parts


def _validate(body: dict[str, Any]) -> ChatCompletionRequest:
    """Parse and police ``body``. Raises ``ParamError`` naming the first bad field
    (as OpenAI's ``param``: ``messages[0].content``)."""
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        param = param.removeprefix(".") or None
        raise ParamError(f"{param or 'body'}: {error['msg']}", param=param) from None
    check_supported(body)
    return request


__all__ = ["MODEL_IDS", "OpenAICodec", "ParamError", "error_body", "error_json", "error_type"]


class OpenAICodec:
    """OpenAI Chat Completions as a codec of the turn pipeline (``app.wire._codec``)."""

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> TurnRequest:
        """Validate a ``POST /v1/chat/completions`` body (see the module table).

        Raises:
            ParamError: naming the first bad or refused field.
        """
        request = _validate(body)
        messages, media_parts = to_messages(request)
        return TurnRequest(
            model=request.model,
            messages=messages,
            stream=bool(request.stream),
            size=len(request.messages),
            options={"include_usage": request.include_usage},
            media_parts=media_parts,
        )

    def error_json(self, problem: Problem) -> dict[str, Any]:
        return error_json(problem)

    def reply(self, turn_id: str, request: TurnRequest) -> Completion:
        include_usage = bool(request.options.get("include_usage"))
        return Completion(turn_id, request.model, include_usage=include_usage)
