"""What an actor enforces on its own: its timeouts, TTLs and restart intensity."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ActorPolicy:
    """What an actor enforces itself. Times in seconds.

    Args:
        idle_ttl_s: a live session with no turn for this long hibernates (closes its CLI).
        retention_s: a hibernated session with no turn for this long is forgotten.
        first_chunk_timeout_s: no message at all from the CLI this long after a prompt:
            the CLI is wedged; the turn fails, the CLI is killed and restarted (resuming).
        stream_idle_timeout_s: after the first message, none for this long: the turn
            fails and is interrupted and drained; the CLI is kept.
        interrupt_drain_s: how long an interrupted turn may take to end before the CLI
            counts as wedged.
        prompt_write_s: how long writing a prompt to the CLI may take (a stopped CLI with
            a full input pipe blocks it); past that the CLI is killed, the turn fails and
            the session restarts.
        max_restarts, restart_window_s: more than ``max_restarts`` client restarts within
            ``restart_window_s`` close the session.
        finish_on_disconnect: when a caller goes away mid-turn, let the turn finish (its
            answer stays in the conversation) instead of interrupting it.
        ask_permissions: route Claude Code's tool-permission questions to the session's
            listeners as ``PermissionRequest``s; with no listener, or no answer within
            ``permission_timeout_s``, the tool is denied. Waiting for an answer does not
            count towards ``stream_idle_timeout_s``.
        slash_commands: Claude Code slash commands a prompt may run (names without the
            ``/``); a prompt starting with any other command is sent as plain text.
        launch_model: the model every new CLI starts with (``CliOptions.model``, or
            ``"default"``, the CLI's name for its own default), as ``set_model`` names
            it; ``None``: not known. A turn for this model on a new CLI needs no switch.
        resume_model: the model a resumed CLI runs: the one named on every CLI's command
            line (``CliOptions.model``), as ``set_model`` names it. ``None`` when none
            is: Claude Code then restores the model the conversation last ran on (2.1.327,
            ``tests/e2e/test_sdk_client.py``), not known here, so the session's model is
            set before its first turn.
        warm_up: a warm-pool actor's CLI computes its context once before it is offered
            (``ClaudeClient.warm_up``), which takes about half of the extra time off a
            new session's first turn.
    """

    idle_ttl_s: float = 900.0
    retention_s: float = 86_400.0
    first_chunk_timeout_s: float = 10.0
    stream_idle_timeout_s: float = 120.0
    interrupt_drain_s: float = 10.0
    prompt_write_s: float = 10.0
    max_restarts: int = 3
    restart_window_s: float = 60.0
    finish_on_disconnect: bool = False
    ask_permissions: bool = False
    permission_timeout_s: float = 60.0
    slash_commands: frozenset[str] = frozenset()
    launch_model: str | None = None
    resume_model: str | None = None
    warm_up: bool = True
