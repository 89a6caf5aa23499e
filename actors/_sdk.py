"""The one place that imports the Claude Agent SDK (``claude-agent-sdk``).

Adapts ``claude_agent_sdk.ClaudeSDKClient`` to the ``ClaudeClient`` protocol, through the
SDK's public API only: ``ClaudeAgentOptions``, ``connect``, ``query``,
``receive_messages``, ``interrupt``, ``set_model``, ``disconnect``, and ``can_use_tool``
for permission questions. Everything the CLI is allowed to do (executable, tools,
permission mode, environment) comes from a ``CliOptions`` built from server settings;
per session only the working directory and the conversation to resume (or fork) vary.

Private SDK details still relied on, each in one place and each guarded by a test in
``tests/unit/test_sdk_adapter.py`` that fails loudly when a new SDK release moves it:

* ``ClaudeSDKClient._transport._process`` (the CLI's ``anyio.abc.Process``), read only in
  ``_cli_process``: the SDK exposes no pid, no exit status and no kill. Guard:
  ``test_the_sdk_still_exposes_the_cli_process``.
* ``claude_agent_sdk/_bundled/claude``, the CLI shipped inside the SDK's wheel
  (``BUNDLED_CLI``). Guard: ``test_the_sdk_wheel_still_bundles_its_cli``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import claude_agent_sdk
import trio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLIJSONDecodeError,
    PermissionResultAllow,
    PermissionResultDeny,
    ProcessError,
    ResultMessage,
    SystemMessage,
    TextBlock,
    ToolPermissionContext,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_agent_sdk import StreamEvent as SdkStreamEvent

from ._client import (
    AssistantText,
    ClaudeClient,
    ClientError,
    ClientMessage,
    ModelRefusedError,
    Prompt,
    SessionInit,
    SessionSpec,
    StreamEvent,
    ToolCall,
    ToolOutput,
    TurnResult,
)
from ._types import PermissionDecision, SessionKey

log = logging.getLogger(__name__)

BUNDLED_CLI = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
"""The Claude Code CLI shipped in the installed ``claude-agent-sdk`` wheel (the lock file
pins SDK and CLI together). May be missing on a platform without such a wheel."""

# How long a closing CLI gets to exit by itself once its input is closed (it writes the
# rest of its transcript) before SIGTERM; SIGKILL follows CliOptions.close_timeout_s later.
_EOF_GRACE_S = 1.0

# Stop the fatal errors of the message stream apart from a message this SDK cannot parse
# (MessageParseError, not exported), which is skipped as 0.0.25's adapter did.
_STREAM_FATAL = (ProcessError, CLIConnectionError, CLIJSONDecodeError)


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
        model: the model the CLI starts with, or ``None`` for its default (a session
            may switch its CLI to another with ``set_model``).
        system_prompt: text that replaces Claude Code's own system prompt
            (``--system-prompt``); ``None`` keeps Claude Code's.
        append_system_prompt: text appended to the system prompt
            (``--append-system-prompt``), after a session's own addition
            (``SessionSpec.system_prompt_file``), so the operator's text comes last.
        close_timeout_s: seconds a CLI gets to exit after SIGTERM before SIGKILL.
        session_store: if given, makes the SDK ``SessionStore`` each CLI mirrors its
            transcript to and resumes from (given ``SessionSpec.session_key``), as a
            cluster's nodes share conversations; ``None``: local transcripts only.
    """

    cli_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    permission_mode: str = "default"
    model: str | None = None
    system_prompt: str | None = None
    append_system_prompt: str | None = None
    close_timeout_s: float = 5.0
    session_store: Callable[[Callable[[], SessionKey | None]], Any] | None = None

    def sdk_options(self, spec: SessionSpec) -> ClaudeAgentOptions:
        """The SDK options for one session. Never sets ``continue_conversation``: it picks
        the directory's latest conversation, which may be another session's.

        The system prompt, as the CLI assembles it: Claude Code's own (or
        ``system_prompt`` instead), then the text of ``spec.system_prompt_file``
        (``--append-system-prompt-file``: a request's text is read from a file, never
        passed as an argument), then ``append_system_prompt``. Only settings' text is
        ever an argument."""
        system_prompt: str | dict[str, Any] = {"type": "preset", "preset": "claude_code"}
        extra_args: dict[str, str | None] = {}
        if self.system_prompt is not None:
            system_prompt = self.system_prompt
            if self.append_system_prompt is not None:
                extra_args["append-system-prompt"] = self.append_system_prompt
        elif self.append_system_prompt is not None:
            system_prompt["append"] = self.append_system_prompt
        if spec.system_prompt_file is not None:
            extra_args["append-system-prompt-file"] = str(spec.system_prompt_file)
        return ClaudeAgentOptions(
            cli_path=self.cli_path,
            cwd=spec.cwd,
            resume=spec.resume,
            fork_session=spec.fork,
            resume_session_at=spec.resume_at,
            model=self.model,
            # Exactly this set of built-in tools (an empty list: none at all).
            tools=list(self.tools),
            allowed_tools=list(self.allowed_tools),
            disallowed_tools=list(self.disallowed_tools),
            permission_mode=self.permission_mode,  # type: ignore[arg-type]
            # The SDK's default is no system prompt at all; Claude Code's own, as before.
            system_prompt=system_prompt,  # type: ignore[arg-type]
            env=dict(self.env),
            include_partial_messages=True,
            # The SDK routes the CLI's permission questions here (--permission-prompt-tool
            # stdio) and answers them in the format the CLI expects.
            can_use_tool=None if spec.can_use_tool is None else _sdk_permission(spec.can_use_tool),
            # Only what these options say: no user, project or local settings, and no MCP
            # servers found in the workspace.
            setting_sources=[],
            strict_mcp_config=True,
            # No app label derived from this process's packages (it would ride in the
            # CLI's user agent), and no disk scan for it at every start.
            client_app="",
            extra_args=extra_args,
            session_store=(
                None if self.session_store is None else self.session_store(spec.session_key)
            ),
        )


def _cli_process(client: ClaudeSDKClient) -> Any:
    """The CLI's ``anyio.abc.Process`` once started, else ``None``. Not a checkpoint.

    The one read of private SDK state (``_transport._process``): the SDK offers no pid,
    exit status or kill. Guarded by ``test_the_sdk_still_exposes_the_cli_process``.
    """
    transport = getattr(client, "_transport", None)
    return getattr(transport, "_process", None)


class _SdkClient:
    """A ``ClaudeClient`` over one ``ClaudeSDKClient``, with a cancel-safe receive.

    The SDK delivers the CLI's messages through a memory channel read by
    ``receive_messages()``, an async generator. A cancelled ``receive`` cancels the
    generator while it waits on that channel, which loses nothing but ends the
    generator: the next ``receive`` starts a new one on the same channel. Parsed
    messages not yet handed out wait in ``_ready``.
    """

    def __init__(self, options: ClaudeAgentOptions) -> None:
        self._client = ClaudeSDKClient(options)
        self._process: Any = None
        self._messages: AsyncIterator[Any] | None = None
        self._ready: collections.deque[ClientMessage] = collections.deque()
        self._assistant_uuid: str | None = None

    async def connect(self) -> None:
        """Start the CLI and complete the SDK's handshake; stop waiting if it exits."""
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            # The SDK waits up to 60 s for the handshake even when the CLI has exited
            # without a word: stop waiting when the process ends.
            nursery.start_soon(self._cancel_on_exit, nursery.cancel_scope)
            try:
                await self._client.connect()
            except Exception as exc:
                error = exc  # raised below, not wrapped in the nursery's group
            nursery.cancel_scope.cancel()
        self._process = _cli_process(self._client) or self._process
        if error is not None:
            cli = self._client.options.cli_path
            raise ClientError(f"could not start Claude Code ({cli}): {error}") from error
        if not self.alive:
            code = None if self._process is None else self._process.returncode
            raise ClientError(f"the CLI exited while starting (exit code {code})")

    async def _cancel_on_exit(self, scope: trio.CancelScope) -> None:
        # The SDK signals no "started": poll, for the second or so connect takes.
        while (process := _cli_process(self._client)) is None:  # noqa: ASYNC110
            await trio.sleep(0.01)
        self._process = process
        await process.wait()
        scope.cancel()

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

    async def query(self, prompt: Prompt) -> None:
        try:
            if isinstance(prompt, str):
                await self._client.query(prompt)
            else:
                await self._client.query(_one_user_message(prompt))
        except Exception as exc:
            raise ClientError(f"cannot send to Claude Code: {exc}") from exc

    async def set_model(self, model: str | None) -> None:
        try:
            await self._client.set_model(model)
        except CLIConnectionError as exc:
            raise ClientError(f"cannot send to Claude Code: {exc}") from exc
        except Exception as exc:
            # The SDK raises a plain Exception with the CLI's error for a refused model.
            if not self.alive:
                raise ClientError(f"Claude Code exited: {exc}") from exc
            raise ModelRefusedError(f"Claude Code refused model {model!r}: {exc}") from exc

    async def warm_up(self) -> None:
        # Measured with Claude Code 2.1.327 on 2 cores: a fresh CLI's first turn took
        # ~135 ms longer than its second; after this, ~65 ms. The CLI builds its system
        # prompt and tool list and counts their tokens (~11 count_tokens requests
        # upstream, which Anthropic does not bill); nothing enters a transcript.
        try:
            await self._client.get_context_usage()
        except CLIConnectionError as exc:
            raise ClientError(f"cannot send to Claude Code: {exc}") from exc
        except Exception as exc:
            if not self.alive:
                raise ClientError(f"Claude Code exited: {exc}") from exc
            log.debug("the CLI could not report its context usage: %s", exc)

    async def receive(self) -> ClientMessage:
        while not self._ready:
            self._ready.extend(self._convert(await self._next_sdk_message()))
        return self._ready.popleft()

    async def _next_sdk_message(self) -> Any:
        while True:
            if self._messages is None:
                self._messages = self._client.receive_messages()
            try:
                return await anext(self._messages)
            except StopAsyncIteration:
                raise ClientError("Claude Code exited") from None
            except _STREAM_FATAL as exc:
                raise ClientError(f"Claude Code failed: {exc}") from exc
            except ClaudeSDKError as exc:
                log.debug("skipping a message this SDK cannot parse: %s", exc)
                self._messages = None
            except BaseException:
                # Cancelled (or worse) while waiting on the SDK's channel: the generator
                # is finished, the channel and every undelivered message intact.
                self._messages = None
                raise

    def _convert(self, message: Any) -> list[ClientMessage]:
        """Translate one SDK message to zero or more ``ClientMessage``s, noting the
        transcript uuid of the latest assistant message for the turn's result."""
        if (
            isinstance(message, AssistantMessage)
            and message.parent_tool_use_id is None
            and message.uuid is not None
        ):
            self._assistant_uuid = message.uuid
        converted = _convert(message)
        if converted and isinstance(converted[-1], TurnResult):
            result = converted[-1]
            converted[-1] = dataclasses.replace(result, assistant_uuid=self._assistant_uuid)
            self._assistant_uuid = None
        return converted

    async def interrupt(self) -> None:
        try:
            await self._client.interrupt()
        except Exception as exc:
            # The turn may have just ended; draining to its result is what matters.
            log.debug("interrupt not acknowledged: %s", exc)

    async def close(self, close_timeout_s: float) -> None:
        """Close the CLI: its input first, SIGTERM after a grace, SIGKILL
        ``close_timeout_s`` later; then the SDK's own state. Waits for the process.

        Must be called shielded: it is bounded by those deadlines, not by cancellation.
        """
        async with trio.open_nursery() as nursery:
            if self.alive:
                nursery.start_soon(self._escalate, close_timeout_s)
            # Closes the CLI's stdin and waits for it to exit (the SDK would send SIGTERM
            # only after 5 s and SIGKILL 5 s later: _escalate is quicker).
            await self._client.disconnect()
            nursery.cancel_scope.cancel()
        if self._messages is not None:
            # Run the generator (and the SDK's own one inside it, which no public call
            # closes) to its end: the stream is closed now, so this returns at once.
            with contextlib.suppress(Exception):
                async for _ in self._messages:
                    pass

    async def _escalate(self, close_timeout_s: float) -> None:
        await trio.sleep(_EOF_GRACE_S)
        if self.alive:
            self._process.terminate()
        await trio.sleep(close_timeout_s)
        if self.alive:
            log.warning("Claude Code pid %s did not exit on SIGTERM: killing it", self.pid)
            self._process.kill()


def _one_user_message(content: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """A user message of content blocks (Anthropic's ``text``, ``image``, ``document``
    block formats), as the one-message stream ``ClaudeSDKClient.query`` accepts."""

    async def stream() -> AsyncIterator[dict[str, Any]]:
        yield {
            "type": "user",
            "message": {"role": "user", "content": content},
            "parent_tool_use_id": None,
        }

    return stream()


def _convert(message: Any) -> list[ClientMessage]:
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
        ClientError: the CLI could not be started or did not complete its handshake
            (e.g. the conversation to resume does not exist).

    Leaving the block, even by cancellation, closes the CLI and waits for it: its input
    is closed, SIGTERM follows after a second, SIGKILL ``cli.close_timeout_s`` later.
    """
    client = _SdkClient(cli.sdk_options(spec))
    try:
        await client.connect()
        yield client
    finally:
        with trio.CancelScope(shield=True):
            # Bounded by close()'s own deadlines; the margin only guards against an SDK
            # that would hang after the process is gone.
            with trio.move_on_after(_EOF_GRACE_S + cli.close_timeout_s + 30):
                await client.close(cli.close_timeout_s)
            if client.alive:  # pragma: no cover - the SDK hung after SIGKILL
                client.abort()
