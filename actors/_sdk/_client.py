"""A connected Claude Code CLI driven through ``ClaudeSDKClient`` as a ``ClaudeClient``:
start, prompts, a cancel-safe receive, interrupts, and a close that escalates to
SIGTERM and SIGKILL."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLIJSONDecodeError,
    ProcessError,
)

from .._client import (
    ClaudeClient,
    ClientError,
    ClientMessage,
    ModelRefusedError,
    Prompt,
    SessionSpec,
    TurnResult,
)
from ._messages import convert, one_user_message
from ._options import CliOptions

log = logging.getLogger(__name__)

# How long a closing CLI gets to exit by itself once its input is closed (it writes the
# rest of its transcript) before SIGTERM; SIGKILL follows CliOptions.close_timeout_s later.
_EOF_GRACE_S = 1.0

# Stop the fatal errors of the message stream apart from a message this SDK cannot parse
# (MessageParseError, not exported), which is skipped as 0.0.25's adapter did.
_STREAM_FATAL = (ProcessError, CLIConnectionError, CLIJSONDecodeError)


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
                await self._client.query(one_user_message(prompt))
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
        converted = convert(message)
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
