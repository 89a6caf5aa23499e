"""What every Claude Code CLI is started with: server-wide ``CliOptions``, never taken
from a request, made into the SDK's ``ClaudeAgentOptions`` for one session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import claude_agent_sdk
from claude_agent_sdk import (
    ClaudeAgentOptions,
    PermissionResultAllow,
    PermissionResultDeny,
    ToolPermissionContext,
)

from .._client import SessionSpec
from .._types import PermissionDecision, SessionKey

BUNDLED_CLI = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
"""The Claude Code CLI shipped in the installed ``claude-agent-sdk`` wheel (the lock file
pins SDK and CLI together). May be missing on a platform without such a wheel."""


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
