"""Translating one turn's client messages into SessionEvents."""

from __future__ import annotations

from typing import Any

from ._client import (
    AssistantText,
    ClientMessage,
    StreamEvent,
    ToolCall,
    ToolOutput,
    TurnResult,
)
from ._types import (
    SessionEvent,
    TextDelta,
    ThinkingDelta,
    ToolResult,
    ToolUse,
    TurnCompleted,
    TurnFailed,
    Usage,
)


class Translator:
    """Turns the CLI's messages for one turn into SessionEvents.

    Text and thinking come from the raw stream events (token by token). A complete text
    block that was never streamed (the CLI writes some messages itself, e.g. API errors)
    is sent as one delta, so no text is lost.
    """

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self.block_index = -1
        self.streamed_text_blocks = 0  # streamed text blocks not yet matched to AssistantText
        self.stop_reason = "end_turn"
        self.model: str | None = None

    def translate(self, message: ClientMessage) -> list[SessionEvent]:
        match message:
            case StreamEvent(event=event):
                return self._stream_event(event)
            case AssistantText(text=text):
                if self.streamed_text_blocks:
                    self.streamed_text_blocks -= 1
                    return []
                self.block_index += 1
                return [TextDelta(self.turn_id, text, self.block_index)]
            case ToolCall(id=id_, name=name, input=input_):
                return [ToolUse(self.turn_id, id_, name, input_)]
            case ToolOutput(tool_use_id=tool_use_id, content=content, is_error=is_error):
                return [ToolResult(self.turn_id, tool_use_id, content, is_error)]
            case _:
                return []

    def _stream_event(self, event: dict[str, Any]) -> list[SessionEvent]:
        kind = event.get("type")
        if kind == "message_start":
            self.model = (event.get("message") or {}).get("model", self.model)
        elif kind == "content_block_start":
            self.block_index += 1
            if (event.get("content_block") or {}).get("type") == "text":
                self.streamed_text_blocks += 1
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [TextDelta(self.turn_id, delta["text"], self.block_index)]
            if delta.get("type") == "thinking_delta" and delta.get("thinking"):
                return [ThinkingDelta(self.turn_id, delta["thinking"], self.block_index)]
        elif kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
        return []

    def finish(self, result: TurnResult) -> TurnCompleted | TurnFailed:
        if result.is_error:
            return TurnFailed(
                self.turn_id,
                "upstream_error",
                result.result or f"Claude Code: {result.subtype}",
                upstream_status=result.api_error_status,
            )
        return TurnCompleted(
            turn_id=self.turn_id,
            stop_reason=self.stop_reason,
            usage=Usage.from_dict(result.usage),
            total_cost_usd=result.total_cost_usd,
            claude_session_id=result.claude_session_id,
            duration_ms=result.duration_ms,
            model=self.model,
            assistant_uuid=result.assistant_uuid,
        )
