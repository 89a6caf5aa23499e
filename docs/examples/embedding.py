"""Embedding ccactors' actors in a Trio program: two sessions, streamed, no HTTP.

Run from the project root: ``uv run python docs/examples/embedding.py``. It uses the
pinned Claude Code CLI and, to stay offline, ccactors' offline upstream; drop the upstream
(and the two ANTHROPIC_* variables) to talk to Anthropic with your own key.
"""

import functools
import tempfile
from pathlib import Path

import trio

from actors import (
    BUNDLED_CLI,
    CliOptions,
    SessionKey,
    SupervisorConfig,
    TextDelta,
    Turn,
    TurnCompleted,
    TurnFailed,
    open_sdk_client,
    open_supervisor,
)
from app.offline._upstream import serve_upstream

CLI = BUNDLED_CLI  # the Claude Code CLI shipped with the locked claude-agent-sdk


async def ask(supervisor, session: str, prompt: str) -> None:
    """Send one turn; print the reply once it is complete (text arrives as TextDeltas)."""
    text = []
    async with supervisor.open_turn(SessionKey(session), Turn(prompt)) as events:
        async for event in events:
            match event:
                case TextDelta():
                    text.append(event.text)
                case TurnCompleted(usage=usage):
                    print(f"[{session}] {prompt!r} -> {''.join(text)!r}", end="")
                    print(f" ({usage.output_tokens} output tokens)")
                case TurnFailed(reason=reason, message=message):
                    print(f"[{session}] {prompt!r} failed ({reason}): {message}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as state:
        async with trio.open_nursery() as nursery:
            upstream = await nursery.start(serve_upstream)
            cli = CliOptions(
                cli_path=CLI,
                env={
                    "ANTHROPIC_BASE_URL": upstream,
                    "ANTHROPIC_API_KEY": "offline",
                    "CLAUDE_CONFIG_DIR": f"{state}/claude",
                },
                tools=("Read",),
            )
            config = SupervisorConfig(workspace_root=Path(state) / "workspaces")
            factory = functools.partial(open_sdk_client, cli)
            async with open_supervisor(config, factory) as supervisor:
                # Two sessions at once: neither waits for the other.
                async with trio.open_nursery() as sessions:
                    sessions.start_soon(ask, supervisor, "alice", "Hi, I'm Alice [[count]]")
                    sessions.start_soon(ask, supervisor, "bob", "Hi, I'm Bob [[count]]")
                # Alice's session remembers her first turn.
                await ask(supervisor, "alice", "Still me [[count]]")
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
