"""Server settings, from the command line, the environment (prefix ``CCACTORS_``) and a
settings file (``app._settings_file``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from actors import BUNDLED_CLI, ActorPolicy, SupervisorConfig

from .security._auth import is_loopback, load_key_hashes
from .security._origin import origin_of
from .wire._models import (
    CLAUDE_CODE_ALIASES,
    DEFAULT_MODEL,
    REQUEST_MODEL,
    UnknownModel,
    resolve_model,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Built-in Claude Code tools that only read. Nothing that writes files, runs commands or
# reaches the network is on by default; operators opt in with CCACTORS_TOOLS.
READ_ONLY_TOOLS = ["Read", "Glob", "Grep"]
ALWAYS_DISALLOWED_BY_DEFAULT = [
    "Bash",
    "BashOutput",
    "KillShell",
    "Edit",
    "Write",
    "NotebookEdit",
    "WebFetch",
    "WebSearch",
]


class InsecureBindError(RuntimeError):
    """Serving beyond loopback without API keys was not explicitly allowed."""


class CliNotFoundError(RuntimeError):
    """No ``claude`` executable was found; the message says where we looked."""


class Settings(BaseSettings):
    """Everything an operator can set. Each field is also ``CCACTORS_<NAME>`` in the
    environment (lists as JSON, e.g. ``CCACTORS_TOOLS='["Read"]'``). Times in seconds."""

    # Errors name the setting and the reason, never the value given: it may be a
    # secret (an API key, the database URL's password).
    model_config = SettingsConfigDict(
        env_prefix="CCACTORS_", extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    state_dir: Path = Field(default_factory=lambda: platformdirs.user_data_path("ccactors"))
    cli_path: Path | None = None
    offline: bool = False

    max_sessions: int = Field(1000, ge=1)
    max_live_sessions: int = Field(16, ge=1)
    # A session needing a CLI while none is free or idle waits this long, then 503.
    live_slot_wait_s: float = Field(10.0, ge=0)
    # Live CLIs one API key may hold (None: half of max_live_sessions, at least 1). Only
    # with API keys: with auth off every session has one principal, so no share applies.
    max_live_sessions_per_key: int | None = Field(None, ge=1)
    warm_pool_size: int = Field(2, ge=0)
    # CLIs starting at once (each start is about a second of CPU); None: one per CPU.
    max_concurrent_starts: int | None = Field(None, ge=1)
    session_idle_ttl_s: float = Field(900.0, gt=0)
    session_retention_s: float = Field(86_400.0, gt=0)
    first_chunk_timeout_s: float = Field(10.0, gt=0)
    stream_idle_timeout_s: float = Field(120.0, gt=0)
    interrupt_drain_timeout_s: float = Field(10.0, gt=0)
    # Writing a prompt to a CLI that takes none (stopped, wedged) gives up after this:
    # the CLI is killed, the turn fails and the session restarts.
    prompt_write_timeout_s: float = Field(10.0, gt=0)
    max_restarts: int = Field(3, ge=0)
    restart_window_s: float = Field(60.0, gt=0)
    on_disconnect: Literal["interrupt", "finish"] = "interrupt"
    shutdown_grace_s: float = Field(10.0, ge=0)
    mailbox_size: int = Field(4, ge=1)
    cli_close_timeout_s: float = Field(5.0, gt=0)
    sse_ping_interval_s: float = Field(15.0, gt=0)
    # WebSocket protocol pings (hypercorn sends them; None: none), and how long a
    # WebSocket may go without a client message, and no turn of its own, before it is
    # closed (1000, with the reason).
    ws_ping_interval_s: float | None = Field(20.0, gt=0)
    ws_idle_timeout_s: float = Field(300.0, gt=0)
    # Slow clients: a request body must arrive within body_read_timeout_s (else 408);
    # a connection must send a request's head within keep_alive_timeout_s of opening or
    # of its previous response (else hypercorn closes it).
    body_read_timeout_s: float = Field(30.0, gt=0)
    keep_alive_timeout_s: float = Field(5.0, gt=0)

    # The model every CLI starts with (None: the CLI's default); a request's model is
    # resolved by model_aliases (name -> Claude model id or Claude Code alias; any
    # claude-* id is taken as is) and unknown_model (a name that is neither: "default"
    # runs the default model, "refuse" is a 400). See docs/operations.md, "Models".
    model: str | None = None
    model_aliases: dict[str, str] = Field(default_factory=lambda: dict(CLAUDE_CODE_ALIASES))
    unknown_model: UnknownModel = "default"
    tools: list[str] = Field(default_factory=lambda: list(READ_ONLY_TOOLS))
    # Nothing pre-approved: reads inside the session's workspace need no approval, and
    # anything else (another session's files, the state directory) is refused.
    allowed_tools: list[str] = Field(default_factory=list)
    disallowed_tools: list[str] = Field(default_factory=lambda: list(ALWAYS_DISALLOWED_BY_DEFAULT))
    # "ask": Claude Code's permission questions go to the session's WebSocket clients.
    permission_mode: Literal["default", "acceptEdits", "plan", "bypassPermissions", "ask"] = (
        "default"
    )
    permission_timeout_s: float = Field(60.0, gt=0)
    # Claude Code's system prompt: its own (default), the operator's text instead
    # (system_prompt), and/or the operator's text appended (append_system_prompt).
    system_prompt: str | None = None
    append_system_prompt: str | None = None
    # What a client's system prompt (Anthropic "system", OpenAI system/developer
    # messages) does: "instructions" (ahead of the opening turn's message), "append"
    # (appended to the session's system prompt, from a file the CLI reads; a session
    # with one starts its own CLI rather than a warm one), or "ignore".
    client_system: Literal["instructions", "append", "ignore"] = "instructions"
    # Claude Code slash commands users may run (e.g. ["compact"]); a prompt starting
    # with any other "/command" is always the user's text, never a command.
    slash_commands: list[str] = Field(default_factory=list)

    # Anthropic's own limit on a Messages request (32 MB): room for a document at
    # max_document_bytes, base64-encoded (4/3 of its bytes), and the rest of the request.
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_messages: int = Field(10_000, ge=1)
    # Text only: images and documents are counted by the media limits below.
    max_prompt_chars: int = Field(1_000_000, ge=1)
    # Images and documents a turn sends (with a session the new message's; without one
    # the history's too): decoded bytes of each image (Anthropic's limit, 5 MB) and of
    # each document (Claude Code's own PDF limit, 20 MB; a plain-text document counts its
    # UTF-8 bytes), over which it is 413; how many in all (Anthropic's and Claude Code's
    # limit per request), over which it is 400.
    max_image_bytes: int = Field(5 * 1024 * 1024, ge=1)
    max_document_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_media_blocks: int = Field(100, ge=0)

    max_turns_per_key: int = Field(16, ge=1)
    max_sessions_per_key: int = Field(200, ge=1)
    # Open WebSocket connections and /events listeners one key (or, with auth off, all
    # callers together) may hold; one more is refused (429, Retry-After).
    max_websockets_per_key: int = Field(16, ge=1)
    max_listeners_per_key: int = Field(16, ge=1)

    api_keys: list[SecretStr] = Field(default_factory=list)
    api_key_hashes_file: Path | None = None
    # Operator keys: needed for /v1/stats and /metrics once any key is configured; they
    # are API keys too (each its own principal). Same forms as api_keys.
    admin_api_keys: list[SecretStr] = Field(default_factory=list)
    admin_api_key_hashes_file: Path | None = None
    insecure_no_auth: bool = False
    # Web pages that may call this server (CORS), as origins: "https://app.example".
    # Requests and WebSockets with any other Origin header are refused (403); empty:
    # no web page may call it. See app.http._browser and docs/security.md.
    allowed_origins: list[str] = Field(default_factory=list)
    # Host header names accepted besides loopback names, the bound host and IP
    # addresses (e.g. a reverse proxy's name); others are refused (421) against DNS
    # rebinding. "*" accepts any name: refused at start-up without API keys.
    allowed_hosts: list[str] = Field(default_factory=list)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    # A cluster (with database_url a PostgreSQL URL): docs/explanation/cluster.md.
    database_url: SecretStr | None = Field(
        None,
        description="Unset: sessions are kept in SQLite in the state directory (one node). "
        "postgresql://...: in PostgreSQL, shared by every node of a cluster (the schema is "
        "migrated at start-up; an unreachable database stops the start). Shown masked.",
    )
    node_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="This node's id in a cluster (default: host name and a random suffix).",
    )
    lease_ttl_s: float = Field(
        10.0,
        ge=1,
        description="A cluster node's hold on a session lasts this long unless renewed "
        "(every third of it); a node that dies loses its sessions to others after it.",
    )
    claim_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A turn for a session another node drives waits this long for it to "
        "be handed over (or for a dead node's lease to run out), then 503.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments (command-line flags), then ``CCACTORS_*`` variables, then the
        settings file if one is given (``app._settings_file.load_settings``)."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        return [origin_of(origin) for origin in origins]

    @model_validator(mode="after")
    def _claims_outlast_leases(self) -> Settings:
        if self.claim_timeout_s <= self.lease_ttl_s:
            raise ValueError(
                "claim_timeout_s must be longer than lease_ttl_s: a turn must be able to "
                "wait for a dead node's lease to run out"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("database_url: only postgresql://... URLs are supported")
        return url

    @field_validator("model_aliases")
    @classmethod
    def _aliases(cls, aliases: dict[str, str]) -> dict[str, str]:
        for name, target in aliases.items():
            for value in (name, target):
                if not REQUEST_MODEL.fullmatch(value):
                    raise ValueError(f"model_aliases: {value!r} is not a model name")
        return aliases

    @property
    def default_model(self) -> str:
        """The model a CLI starts with, as ``set_model`` names it: ``model``, else
        Claude Code's ``"default"``."""
        return self.model or DEFAULT_MODEL

    def resolve_model(self, requested: str) -> str | None:
        """A request's model name resolved by ``model_aliases`` and ``unknown_model``
        (``app.wire._models.resolve_model``); ``None`` for no name.

        Raises:
            RequestError: malformed, or unknown under ``refuse`` (400).
        """
        return resolve_model(
            requested,
            aliases=self.model_aliases,
            unknown=self.unknown_model,
            default=self.default_model,
        )

    @property
    def workspace_root(self) -> Path:
        """Where each session's working directory lives."""
        return self.state_dir / "workspaces"

    @property
    def claude_config_dir(self) -> Path:
        """``CLAUDE_CONFIG_DIR`` for every CLI: transcripts stay in our state directory."""
        return self.state_dir / "claude"

    def key_hashes(self) -> list[bytes]:
        """SHA-256 of every accepted API key, operator keys included (empty: auth is off).

        Raises:
            KeyFileError: ``api_key_hashes_file`` is unreadable or malformed.
        """
        keys = [key.get_secret_value() for key in self.api_keys]
        return load_key_hashes(keys, self.api_key_hashes_file) + self.admin_key_hashes()

    def admin_key_hashes(self) -> list[bytes]:
        """SHA-256 of every operator key (``admin_api_keys`` and its hash file).

        Raises:
            KeyFileError: ``admin_api_key_hashes_file`` is unreadable or malformed.
        """
        keys = [key.get_secret_value() for key in self.admin_api_keys]
        return load_key_hashes(keys, self.admin_api_key_hashes_file)

    def secrets(self) -> list[str]:
        """Every secret value of these settings (API and operator keys), to keep out of
        any CLI."""
        return [key.get_secret_value() for key in (*self.api_keys, *self.admin_api_keys)]

    def check_exposure(self) -> None:
        """Refuse to serve beyond this machine, or to any web page, without API keys.

        Raises:
            InsecureBindError: no key is configured, ``insecure_no_auth`` is not set, and
                ``host`` is not loopback or ``allowed_hosts`` has ``"*"``.
        """
        if self.key_hashes() or self.insecure_no_auth:
            return
        if "*" in self.allowed_hosts:
            raise InsecureBindError(
                'refusing CCACTORS_ALLOWED_HOSTS=["*"] without API keys: any web page '
                "the user visits could then read and drive this server through DNS "
                "rebinding. List the host names instead, set CCACTORS_API_KEYS (or "
                "CCACTORS_API_KEY_HASHES_FILE), or pass --insecure-no-auth if that is "
                "really intended"
            )
        if is_loopback(self.host):
            return
        raise InsecureBindError(
            f"refusing to listen on {self.host} without API keys: anyone who can reach it "
            "could run Claude Code. Set CCACTORS_API_KEYS (or CCACTORS_API_KEY_HASHES_FILE), "
            "bind to 127.0.0.1, or pass --insecure-no-auth if that is really intended"
        )

    def live_share(self) -> int | None:
        """Live CLIs one API key may hold: ``max_live_sessions_per_key``, by default half
        of ``max_live_sessions`` (at least 1); ``None`` (no share) when auth is off, as
        every session then has the same principal and a share would only cut capacity.

        Raises:
            KeyFileError: as for ``key_hashes``.
        """
        if not self.key_hashes():
            return None
        share = self.max_live_sessions_per_key or max(1, self.max_live_sessions // 2)
        return min(share, self.max_live_sessions)

    def supervisor_config(self) -> SupervisorConfig:
        return SupervisorConfig(
            workspace_root=self.workspace_root,
            max_sessions=self.max_sessions,
            max_live_sessions=self.max_live_sessions,
            live_slot_wait_s=self.live_slot_wait_s,
            max_live_sessions_per_principal=self.live_share(),
            warm_pool_size=min(self.warm_pool_size, self.max_live_sessions),
            max_concurrent_starts=self.max_concurrent_starts,
            mailbox_size=self.mailbox_size,
            max_turns_per_principal=self.max_turns_per_key,
            max_sessions_per_principal=self.max_sessions_per_key,
            policy=ActorPolicy(
                idle_ttl_s=self.session_idle_ttl_s,
                retention_s=self.session_retention_s,
                first_chunk_timeout_s=self.first_chunk_timeout_s,
                stream_idle_timeout_s=self.stream_idle_timeout_s,
                interrupt_drain_s=self.interrupt_drain_timeout_s,
                prompt_write_s=self.prompt_write_timeout_s,
                max_restarts=self.max_restarts,
                restart_window_s=self.restart_window_s,
                finish_on_disconnect=self.on_disconnect == "finish",
                ask_permissions=self.permission_mode == "ask",
                permission_timeout_s=self.permission_timeout_s,
                slash_commands=frozenset(name.lstrip("/") for name in self.slash_commands),
                launch_model=self.default_model,
            ),
        )

    def resolve_cli_path(self) -> Path:
        """The ``claude`` executable: ``cli_path`` if set, else the CLI bundled with the
        locked ``claude-agent-sdk`` (``BUNDLED_CLI``), else the first ``claude`` on ``PATH``.

        Raises:
            CliNotFoundError: none of those exists.
        """
        if self.cli_path is not None:
            if not self.cli_path.is_file():
                raise CliNotFoundError(f"CCACTORS_CLI_PATH={self.cli_path} is not a file")
            return self.cli_path.resolve()  # the CLI runs in each session's own cwd
        if BUNDLED_CLI.is_file():
            return BUNDLED_CLI
        if found := shutil.which("claude"):
            return Path(found)
        raise CliNotFoundError(
            "the Claude Code CLI was not found: set CCACTORS_CLI_PATH, run `uv sync` in "
            f"{PROJECT_ROOT} (the claude-agent-sdk wheel bundles the pinned version), or put "
            "`claude` on PATH"
        )
