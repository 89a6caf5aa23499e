"""The SDK's messages as ``ClientMessage``s, and a prompt of content blocks as the
SDK's input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_agent_sdk import StreamEvent as SdkStreamEvent

from .._client import (
    AssistantText,
    ClientMessage,
    SessionInit,
    StreamEvent,
    ToolCall,
    ToolOutput,
    TurnResult,
)


def one_user_message(content: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """A user message of content blocks (Anthropic's ``text``, ``image``, ``document``
    block formats), as the one-message stream ``ClaudeSDKClient.query`` accepts."""

    async def stream() -> AsyncIterator[dict[str, Any]]:
        yield {
            "type": "user",
            "message": {"role": "user", "content": content},
            "parent_tool_use_id": None,
        }

    return stream()


def convert(message: Any) -> list[ClientMessage]:
    """Translate one SDK message to zero or more ``ClientMessage``s."""
    match message:
        case SdkStreamEvent(event=event):
            return [StreamEvent(event)]
        case AssistantMessage(model="<synthetic>"):
            return []  # the CLI's own text (e.g. an API error), repeated in the result
        case AssistantMessage(content=blocks):
            out: list[ClientMessage] = []
            for block in blocks:
                if isinstance(block, TextBlock):
                    out.append(AssistantText(block.text))
                elif isinstance(block, ToolUseBlock):
                    out.append(ToolCall(block.id, block.name, block.input))
            return out
        case UserMessage(content=list() as blocks):
            return [
                ToolOutput(block.tool_use_id, block.content, bool(block.is_error))
                for block in blocks
                if isinstance(block, ToolResultBlock)
            ]
        case SystemMessage(subtype="init", data=data) if data.get("session_id"):
            return [SessionInit(data["session_id"])]
        case ResultMessage():
            return [
                TurnResult(
                    claude_session_id=message.session_id,
                    is_error=message.is_error,
                    subtype=message.subtype,
                    result=message.result,
                    usage=message.usage,
                    total_cost_usd=message.total_cost_usd,
                    duration_ms=message.duration_ms,
                    api_error_status=_int_or_none(message.api_error_status),
                    user_message_uuid=message.user_message_uuid,
                )
            ]
        case _:
            return []


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None
