"""The one place that imports the Claude Code SDK (``claude-code-sdk``).

Adapts ``claude_code_sdk.ClaudeSDKClient`` to the ``ClaudeClient`` protocol. Everything
the CLI is allowed to do (executable, tools, permission mode, environment) comes from a
``CliOptions`` built from server settings; per session only the working directory and the
conversation to resume vary.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from claude_code_sdk import (
    AssistantMessage,
    ClaudeCodeOptions,
    ClaudeSDKClient,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    SystemMessage,
    TextBlock,
    ToolPermissionContext,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_code_sdk._errors import MessageParseError
from claude_code_sdk._internal.message_parser import parse_message
from claude_code_sdk._internal.query import Query
from claude_code_sdk._internal.transport.subprocess_cli import SubprocessCLITransport
from claude_code_sdk.types import StreamEvent as SdkStreamEvent

from ._client import (
    AssistantText,
    ClaudeClient,
    ClientError,
    ClientMessage,
    SessionInit,
    SessionSpec,
    StreamEvent,
    ToolCall,
    ToolOutput,
    TurnResult,
)
from ._types import PermissionDecision

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CliOptions:
    """Server-wide options for every CLI process; never taken from a request.

    Args:
        cli_path: the ``claude`` executable.
        env: extra environment for the CLI (e.g. ``CLAUDE_CONFIG_DIR``,
            ``ANTHROPIC_BASE_URL``), on top of the server's own environment.
        tools: the built-in tools the model may see at all (``--tools``).
        allowed_tools: tools that run without asking (``--allowedTools``).
        disallowed_tools: tools that are always refused (``--disallowedTools``).
        permission_mode: the CLI's ``--permission-mode``.
        model: the model the CLI uses, or ``None`` for its default.
        append_system_prompt: text appended to Claude Code's system prompt.
        close_timeout_s: seconds a CLI gets to exit after SIGTERM before SIGKILL.
    """

    cli_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    permission_mode: str = "default"
    model: str | None = None
    append_system_prompt: str | None = None
    close_timeout_s: float = 5.0

    def sdk_options(self, spec: SessionSpec) -> ClaudeCodeOptions:
        """The SDK options for one session. Never sets ``continue_conversation``: it picks
        the directory's latest conversation, which may be another session's."""
        return ClaudeCodeOptions(
            cwd=spec.cwd,
            resume=spec.resume,
            model=self.model,
            allowed_tools=list(self.allowed_tools),
            disallowed_tools=list(self.disallowed_tools),
            permission_mode=self.permission_mode,  # type: ignore[arg-type]
            append_system_prompt=self.append_system_prompt,
            env=dict(self.env),
            include_partial_messages=True,
            can_use_tool=None if spec.can_use_tool is None else _sdk_permission(spec.can_use_tool),
            # The SDK's control protocol carries the CLI's permission questions to
            # can_use_tool (what ClaudeSDKClient.connect would set up itself).
            permission_prompt_tool_name=None if spec.can_use_tool is None else "stdio",
            # Only what these options say: no user or project settings, no MCP servers
            # found in the workspace, and exactly this set of built-in tools.
            extra_args={
                "tools": ",".join(self.tools),
                "setting-sources": "",
                "strict-mcp-config": None,
            },
        )


class _Query(Query):
    """The SDK's control protocol, answering permission questions in the format the
    pinned CLI expects.

    claude-code-sdk 0.0.25 answers ``can_use_tool`` with ``{"allow": true}``, which
    Claude Code 2.x rejects; it wants ``{"behavior": "allow", "updatedInput": {...}}`` or
    ``{"behavior": "deny", "message": ...}`` (what the successor claude-agent-sdk sends).
    """

    async def _handle_control_request(self, request: Any) -> None:
        body = request["request"]
        if body.get("subtype") != "can_use_tool" or self.can_use_tool is None:
            await super()._handle_control_request(request)
            return
        tool_input = body.get("input") or {}
        try:
            result = await self.can_use_tool(
                body["tool_name"], tool_input, ToolPermissionContext(suggestions=[])
            )
            if isinstance(result, PermissionResultAllow):
                answer = {"behavior": "allow", "updatedInput": result.updated_input or tool_input}
            else:
                answer = {"behavior": "deny", "message": result.message}
            response = {
                "subtype": "success",
                "request_id": request["request_id"],
                "response": answer,
            }
        except Exception as exc:
            response = {"subtype": "error", "request_id": request["request_id"], "error": str(exc)}
        await self.transport.write(
            json.dumps({"type": "control_response", "response": response}) + "\n"
        )


class _SdkClient(ClaudeSDKClient):
    """``ClaudeSDKClient`` started from a given executable, with a cancel-safe receive.

    ``claude-code-sdk`` finds the executable on ``PATH`` only; this subclass passes the
    configured one to the SDK's own transport and control protocol. Messages are read
    straight from the SDK's message stream (a memory channel), so a cancelled receive
    loses nothing, unlike abandoning ``receive_messages()`` halfway through.
    """

    def __init__(self, options: ClaudeCodeOptions, cli_path: Path) -> None:
        super().__init__(options)
        self._cli_path = cli_path
        self._ready: collections.deque[ClientMessage] = collections.deque()

    async def connect(self, prompt: Any = None) -> None:
        async def no_prompt() -> AsyncIterator[dict[str, Any]]:
            return
            yield {}

        self._transport = SubprocessCLITransport(
            prompt=no_prompt(), options=self.options, cli_path=self._cli_path
        )
        await self._transport.connect()
        self._query = _Query(
            transport=self._transport,
            is_streaming_mode=True,
            can_use_tool=self.options.can_use_tool,
        )
        await self._query.start()
        # The SDK waits 60 s for the handshake even if the CLI has exited (e.g. a
        # transcript to resume was not found): stop waiting when the process ends.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._cancel_on_exit, nursery.cancel_scope)
            await self._query.initialize()
            nursery.cancel_scope.cancel()
        if not self.alive:
            code = self._process.returncode if self._process is not None else None
            raise ClientError(f"the CLI exited while starting (exit code {code})")

    async def _cancel_on_exit(self, scope: trio.CancelScope) -> None:
        await self.wait_exited()
        scope.cancel()

    @property
    def _process(self) -> Any:
        return getattr(self._transport, "_process", None)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def wait_exited(self) -> None:
        if self._process is None:
            await trio.lowlevel.checkpoint()
        else:
            await self._process.wait()

    def abort(self) -> None:
        if self.alive:
            log.warning("killing Claude Code pid %s", self.pid)
            self._process.kill()

    async def query(self, prompt: str) -> None:  # type: ignore[override]
        try:
            await super().query(prompt)
        except Exception as exc:
            raise ClientError(f"cannot send to Claude Code: {exc}") from exc

    async def receive(self) -> ClientMessage:
        while not self._ready:
            try:
                data = await self._query._message_receive.receive()
            except Exception as exc:
                raise ClientError("the Claude Code message stream is closed") from exc
            if data.get("type") == "end":
                raise ClientError("Claude Code exited")
            if data.get("type") == "error":
                raise ClientError(f"Claude Code failed: {data.get('error')}")
            try:
                message = parse_message(data)
            except MessageParseError:
                log.debug("skipping a message this SDK does not know: %r", data.get("type"))
                continue
            self._ready.extend(_convert(message, data))
        return self._ready.popleft()

    async def interrupt(self) -> None:
        try:
            await super().interrupt()
        except Exception as exc:
            # The turn may have just ended; draining to its result is what matters.
            log.debug("interrupt not acknowledged: %s", exc)

    async def close(self) -> None:
        """Close the SDK's task group and terminate the CLI (SIGTERM), waiting for it."""
        if self._query is None and self._transport is not None:
            await self._transport.close()  # started, but the handshake failed
        await self.disconnect()

    async def kill(self) -> None:
        """SIGKILL the CLI and wait for it to be reaped."""
        process = self._process
        if process is not None and process.returncode is None:
            log.warning("Claude Code pid %s did not exit on SIGTERM: killing it", process.pid)
            process.kill()
            await process.wait()


def _convert(message: Any, raw: dict[str, Any]) -> list[ClientMessage]:
    """Translate one SDK message (and the raw JSON it came from, for fields this SDK
    version drops) to zero or more ``ClientMessage``s."""
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
                    api_error_status=_int_or_none(raw.get("api_error_status")),
                )
            ]
        case _:
            return []


def _sdk_permission(ask: Callable[[str, dict[str, Any]], Awaitable[PermissionDecision]]) -> Any:
    """Adapt a ``SessionSpec.can_use_tool`` to the SDK's ``can_use_tool`` callback."""

    async def can_use_tool(
        tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        decision = await ask(tool_name, tool_input)
        if decision.allow:
            return PermissionResultAllow()
        return PermissionResultDeny(message=decision.message)

    return can_use_tool


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None


@asynccontextmanager
async def open_sdk_client(cli: CliOptions, spec: SessionSpec) -> AsyncIterator[ClaudeClient]:
    """Start a Claude Code CLI for one session and yield it as a ``ClaudeClient``.

    A ``ClientFactory`` once ``cli`` is bound (``functools.partial(open_sdk_client, cli)``).
    Must be entered and left by the same task, which must do all the client's I/O.

    Raises:
        ClientError: the CLI could not be started or did not complete its handshake.

    Leaving the block, even by cancellation, terminates the CLI process and waits for it
    (SIGKILL after ``cli.close_timeout_s``).
    """
    client = _SdkClient(cli.sdk_options(spec), cli.cli_path)
    # The SDK enters a task group in connect() and leaves it in disconnect(), so no cancel
    # scope may be opened between the two. To shield and bound the close, this scope is
    # opened *before* connect and made shielded, with a deadline, only when closing.
    with trio.CancelScope() as lifetime:
        try:
            try:
                await client.connect()
            except Exception as exc:
                raise ClientError(f"could not start Claude Code ({cli.cli_path}): {exc}") from exc
            yield client
        finally:
            lifetime.shield = True
            lifetime.deadline = trio.current_time() + cli.close_timeout_s
            try:
                await client.close()
            except trio.Cancelled:
                # Only lifetime's own deadline reaches inside a shielded scope: the CLI
                # ignored SIGTERM. Kill it, then let any exception from the block go on.
                with trio.CancelScope(shield=True):
                    await client.kill()
