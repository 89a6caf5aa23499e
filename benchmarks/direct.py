"""The baseline: ``claude_agent_sdk.ClaudeSDKClient`` used in this process, alone.

The SDK drives the same CLI with the same flags as every ccactors session: the options
come from ``app._server.cli_options`` and ``CliOptions.sdk_options`` (tools, permission
mode, system prompt preset, ``--include-partial-messages``, no settings sources, the
quiet environment), with the same offline upstream, on the model the benchmark's
requests ask ccactors for (``--model``: ``MODEL``), so that it is the same turn:
Claude Code builds a different request for each model (in 2.1.332, ~36 KB for
``claude-sonnet-4-6``, ~14 KB for its default ``claude-opus-5-5``), though timed in
turns the two took the same time. It is the limit any proxy in front of Claude
Code is measured against: the same CLI's work, and nothing else.

A client is connected, used and disconnected by one task (the SDK binds its task group
to the task that connected), as in a ccactors actor.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio
from claude_agent_sdk import ClaudeSDKClient, ResultMessage, StreamEvent

from actors import CliOptions, SessionSpec
from app._server import cli_options
from app._settings import Settings

from .measure import DELTA, TURN_LIMIT_S, TurnTiming
from .server import MODEL, upstream_env

# Seconds a client's disconnect may take (the SDK ends its CLI within ~10 s).
DISCONNECT_LIMIT_S = 30.0


@dataclass
class Direct:
    """Options for direct SDK clients: one workspace each under ``root``."""

    cli: CliOptions
    root: Path
    cwd_of: dict[str, Path] = field(default_factory=dict)  # Claude session id -> cwd
    _made: int = 0

    @classmethod
    def create(cls, root: Path, upstream_url: str) -> Direct:
        """Options as ccactors builds them from default settings (state under ``root``),
        pointed at ``upstream_url``, the CLI started on ``MODEL``: the model ccactors'
        sessions switch their CLIs to for the benchmark's requests."""
        settings = Settings(state_dir=root, port=0)
        cli = replace(cli_options(settings, upstream_env(upstream_url)), model=MODEL)
        return cls(cli, root)

    def workspace(self) -> Path:
        """A fresh, empty working directory."""
        self._made += 1
        path = self.root / "workspaces" / f"w{self._made}"
        path.mkdir(parents=True)
        return path

    @asynccontextmanager
    async def open(self, resume: str | None = None) -> AsyncIterator[Session]:
        """Connect a client (start its CLI) in a fresh workspace, or resume the Claude
        session ``resume`` in the workspace it was started in; disconnect on leaving."""
        cwd = self.cwd_of[resume] if resume else self.workspace()
        spec = SessionSpec(cwd, resume=resume)
        client = ClaudeSDKClient(self.cli.sdk_options(spec))
        started = time.perf_counter()
        await client.connect()
        session = Session(client, spec.cwd, time.perf_counter() - started)
        try:
            yield session
        finally:
            if session.claude_session_id:
                self.cwd_of[session.claude_session_id] = spec.cwd
            # Also when the run is stopped (cancelled): its CLI must not outlive it.
            with trio.move_on_after(DISCONNECT_LIMIT_S, shield=True):
                await client.disconnect()


@dataclass
class Session:
    """One connected SDK client; ``connect_s``: how long connecting (starting the CLI
    and its handshake) took."""

    client: ClaudeSDKClient
    cwd: Path
    connect_s: float
    claude_session_id: str | None = None

    async def warm_up(self, model: str) -> None:
        """What ccactors' warm pool does to a CLI before a session adopts it
        (``SessionActor._warm_up``): set its model to ``model`` (even the one it was
        started with), then ask for its context usage (a control request; nothing
        enters the conversation)."""
        await self.client.set_model(model)
        await self.client.get_context_usage()

    async def turn(self, prompt: str) -> TurnTiming:
        """One turn: send ``prompt``, read to the result message; its timings. A turn
        not over within ``TURN_LIMIT_S`` is given up (``error``; the client is then
        unusable)."""
        timing = TurnTiming()
        started = time.perf_counter()
        with trio.move_on_after(TURN_LIMIT_S) as guard:
            await self._read_turn(prompt, timing, started)
        if guard.cancelled_caught:
            timing.error = f"no end of the turn within {TURN_LIMIT_S} s"
        timing.turn_s = time.perf_counter() - started
        return timing

    async def _read_turn(self, prompt: str, timing: TurnTiming, started: float) -> None:
        await self.client.query(prompt)
        async for message in self.client.receive_response():
            if isinstance(message, StreamEvent):
                event = message.event
                if (
                    event.get("type") == DELTA
                    and event.get("delta", {}).get("type") == "text_delta"
                ):
                    now = time.perf_counter() - started
                    timing.deltas += 1
                    timing.last_delta_s = now
                    if timing.first_delta_s is None:
                        timing.first_delta_s = timing.ttft_s = now
            elif isinstance(message, ResultMessage):
                self.claude_session_id = message.session_id
                if message.is_error:
                    timing.error = message.result or message.subtype
