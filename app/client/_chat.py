"""``ccactors chat``: a terminal chat with one session, over its WebSocket.

Each line typed is a turn; the reply streams in as it is written. Ctrl-C during a reply
interrupts it (the session keeps the conversation); Ctrl-C or Ctrl-D at the prompt ends
the chat.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from rich.console import Console
from rich.markup import escape
from trio_websocket import ConnectionClosed, HandshakeError

from ._ws_client import SessionClient, SessionRejectedError, open_session_client

ReadLine = Callable[[], Awaitable[str | None]]


def run_chat(base_url: str, session_id: str | None, api_key: str | None = None) -> None:
    """Chat with a session of the server at ``base_url`` in this terminal.

    Args:
        base_url: the ccactors server, e.g. ``http://127.0.0.1:8765``.
        session_id: the session to join; ``None`` starts a new one (``chat-<hex>``,
            printed so it can be joined again, or from another terminal).
        api_key: the key to present, when the server requires one.

    Raises:
        SystemExit: with status 1 if the server cannot be reached or refuses the session.

    Blocks until the user ends the chat (Ctrl-D, or Ctrl-C at the prompt).
    """
    console = Console(highlight=False)
    session_id = session_id or f"chat-{uuid.uuid4().hex[:12]}"
    console.print(
        f"[bold]session[/] {escape(session_id)} at {escape(base_url)}\n"
        "[dim]Ctrl-C stops a reply; Ctrl-C or Ctrl-D at the prompt leaves.[/]"
    )
    try:
        trio.run(_main, base_url, session_id, api_key, console)
    except KeyboardInterrupt:  # before the chat took over Ctrl-C
        raise SystemExit(130) from None
    except SessionRejectedError as exc:
        console.print(f"[red]refused:[/] {escape(str(exc))}")
        raise SystemExit(1) from None
    except (HandshakeError, OSError) as exc:
        cause = exc.__cause__ or exc
        console.print(
            f"[red]cannot reach {escape(base_url)}:[/] {escape(str(cause) or repr(cause))}"
        )
        raise SystemExit(1) from None


class _State:
    replying = False  # a turn of ours is on its way


async def _main(base_url: str, session_id: str, api_key: str | None, console: Console) -> None:
    async with (
        open_session_client(base_url, session_id, api_key=api_key) as client,
        # A dup of stdin read without a thread, so Ctrl-C can cancel a read; closing it
        # puts the terminal's blocking mode back.
        trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin,
        trio.open_nursery() as nursery,
    ):
        hello = client.session
        joined = f"joined, {hello['state']}" if hello["exists"] else "a new session"
        console.print(f"[dim]{joined}[/]")
        state = _State()
        nursery.start_soon(_on_ctrl_c, client, state, console, nursery.cancel_scope)
        try:
            await chat(client, console, _line_reader(stdin, console), state)
        except ConnectionClosed as exc:
            console.print(f"\n[red]the server closed the connection[/] ({exc.reason.code})")
        nursery.cancel_scope.cancel()
    console.print()


async def chat(
    client: SessionClient, console: Console, read_line: ReadLine, state: _State | None = None
) -> None:
    """Send each line ``read_line`` returns as a turn and print its reply, until it
    returns ``None`` (end of input). Blank lines are skipped.

    Raises:
        trio_websocket.ConnectionClosed: the server closed the connection.
    """
    state = state or _State()
    while (line := await read_line()) is not None:
        if not line.strip():
            continue
        state.replying = True
        try:
            async for frame in client.stream_turn(line):
                _render(console, frame)
        finally:
            state.replying = False


async def _on_ctrl_c(
    client: SessionClient, state: _State, console: Console, scope: trio.CancelScope
) -> None:
    """Ctrl-C while a reply streams sends ``interrupt``; at the prompt it leaves."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            if not state.replying:
                scope.cancel()
                return
            console.print("\n[yellow]interrupting…[/]")
            await client.interrupt()


def _line_reader(stream: trio.abc.ReceiveStream, console: Console) -> ReadLine:
    """Read lines from ``stream``, printing a prompt first; ``None`` at its end."""
    buffer = bytearray()

    async def read_line() -> str | None:
        console.print("[bold green]you>[/] ", end="")
        while b"\n" not in buffer:
            data = await stream.receive_some()
            if not data:
                line, buffer[:] = bytes(buffer), b""
                return line.decode(errors="replace") if line else None
            buffer.extend(data)
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        return line.decode(errors="replace")

    return read_line


def _render(console: Console, frame: dict[str, Any]) -> None:
    """Print one frame of our turn."""
    match frame["type"]:
        case "turn_started":
            console.print("[bold cyan]claude>[/] ", end="")
        case "text_delta":
            console.print(frame["text"], end="", markup=False, soft_wrap=True)
        case "thinking_delta":
            console.print(frame["thinking"], end="", style="dim italic", markup=False)
        case "tool_use":
            console.print(f"\n[dim]» {escape(frame['name'])} {escape(str(frame['input']))}[/]")
        case "tool_result":
            text = str(frame["content"])
            text = text if len(text) <= 200 else text[:200] + "…"
            console.print(f"[dim]« {escape(text)}[/]")
        case "turn_completed":
            usage, cost = frame["usage"], frame["total_cost_usd"]
            spent = f", ${cost:.4f}" if cost else ""
            tokens = f"{usage['input_tokens']} in, {usage['output_tokens']} out"
            console.print(f"\n[dim]({tokens}{spent})[/]")
        case "turn_failed":
            console.print(f"\n[red]{escape(frame['reason'])}:[/] {escape(frame['message'])}")
        case "error":
            error = frame["error"]
            retry = error.get("retry_after_s")
            hint = f" (retry in {retry}s)" if retry else ""
            console.print(f"[red]{escape(error['type'])}:[/] {escape(error['message'])}{hint}")
        case "lagged":
            console.print(f"\n[yellow]… {frame['dropped']} events lost (reading too slowly)[/]")
