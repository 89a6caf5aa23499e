"""The OpenAI Chat Completions replies: the ``chat.completion`` object, the
``chat.completion.chunk`` stream (``data:`` lines with no event names, ending in
``data: [DONE]``) and the error body ``{"error": {"message", "type", "param", "code"}}``,
as OpenAI's API reference documents them. Requests are ``app.wire._openai``."""

from __future__ import annotations

import time
from typing import Any

from actors import SessionEvent, TextDelta, TurnCompleted, TurnFailed

from ._problems import Problem, failure_problem
from ._sse import encode_sse_data, sse_comment

# -- Errors ---------------------------------------------------------------------------


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status: ``rate_limit_error`` for 429,
    ``server_error`` for 5xx, ``invalid_request_error`` for every other 4xx."""
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_json(problem: Problem) -> dict[str, Any]:
    """OpenAI's error JSON for a problem: its ``type`` from the status, its ``param``
    and ``code``. Not a checkpoint."""
    return error_body(problem.status, problem.message, param=problem.param, code=problem.code)


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


# -- Responses ------------------------------------------------------------------------

# Anthropic stop reasons that are not "stop" in OpenAI's terms.
FINISH_REASONS = {
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}


def usage_of(done: TurnCompleted) -> dict[str, Any]:
    """OpenAI's ``usage`` for a completed turn. Prompt tokens include cache writes and
    reads (Anthropic counts them apart); ``prompt_tokens_details.cached_tokens`` are the
    reads."""
    u = done.usage
    prompt = u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_input_tokens},
    }


class _Joiner:
    """Joins a turn's text deltas into one string, a blank line between content blocks
    (a turn that uses Claude Code's tools has several)."""

    def __init__(self) -> None:
        self._block: int | None = None

    def piece(self, delta: TextDelta) -> str:
        gap = "" if self._block in (None, delta.block_index) else "\n\n"
        self._block = delta.block_index
        return gap + delta.text


class Completion:
    """One turn's answer in Chat Completions form: ``object()`` builds the non-streaming
    ``chat.completion``; ``start()``, ``encode(event)``, ``failed()`` and ``end()`` give the
    ``data:`` frames of the streaming one.

    The stream: a chunk with ``delta {"role": "assistant", "content": ""}``, a chunk per
    text delta, a chunk with an empty delta and ``finish_reason``, with ``include_usage``
    a chunk with ``choices: []`` and ``usage`` (earlier chunks then carry
    ``"usage": null``), then ``data: [DONE]``. A failed turn ends with
    ``data: {"error": {...}}`` and ``data: [DONE]`` (``failed`` and ``end``).
    """

    def __init__(self, turn_id: str, model: str, *, include_usage: bool = False) -> None:
        self.id = "chatcmpl-" + turn_id.removeprefix("turn_")
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self._joiner = _Joiner()

    def object(self, events: list[SessionEvent], done: TurnCompleted) -> dict[str, Any]:
        self.model = done.model or self.model  # the model that answered, when known
        text = "".join(self._joiner.piece(e) for e in events if isinstance(e, TextDelta))
        message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(done)}
        return {**self._head("chat.completion"), "choices": [choice], "usage": usage_of(done)}

    def start(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def encode(self, event: SessionEvent) -> list[bytes]:
        match event:
            case TextDelta() if event.text:
                return [self._chunk({"content": self._joiner.piece(event)})]
            case TurnCompleted():
                self.model = event.model or self.model  # from here on: the one that answered
                frames = [self._chunk({}, _finish(event))]
                if self.include_usage:
                    usage = {**self._head("chat.completion.chunk"), "choices": []}
                    frames.append(encode_sse_data({**usage, "usage": usage_of(event)}))
                return frames
            case TurnFailed():
                return self.failed(failure_problem(event))
            case _:
                return []

    def failed(self, problem: Problem) -> list[bytes]:
        """``data: {"error": {...}}``."""
        return [encode_sse_data(error_json(problem))]

    def ping(self) -> bytes:
        return sse_comment("ping")

    def end(self) -> list[bytes]:
        return [DONE]

    def message(self, events: list[SessionEvent], done: TurnCompleted) -> dict[str, Any]:
        return self.object(events, done)

    def _head(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk = {**self._head("chat.completion.chunk"), "choices": [choice]}
        return encode_sse_data({**chunk, "usage": None} if self.include_usage else chunk)


def _finish(done: TurnCompleted) -> str:
    return FINISH_REASONS.get(done.stop_reason, "stop")


DONE = b"data: [DONE]\n\n"
