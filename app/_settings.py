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
    environment (lists as JSON, e.g. ``CCACTORS_TOOLS='["Read"]'``) and a key of the
    settings file. Times in seconds.

    Each field's ``description`` is its documentation: ``docs/reference/settings.md`` is
    generated from them (``app._settings_reference``), and a test fails when it is stale.
    """

    # Errors name the setting and the reason, never the value given: it may be a
    # secret (an API key, the database URL's password).
    model_config = SettingsConfigDict(
        env_prefix="CCACTORS_", extra="ignore", hide_input_in_errors=True
    )

    host: str = Field(
        "127.0.0.1",
        description="The address to listen on. A host that is not loopback needs API keys "
        "(`api_keys` or `api_key_hashes_file`), or `insecure_no_auth`.",
        examples=["0.0.0.0"],
    )
    port: int = Field(
        8765, ge=0, le=65535, description="The port to listen on; 0 picks a free one."
    )
    state_dir: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("ccactors"),
        description="Where the server keeps its state, private to its user (0700): each "
        "session's working directory (`workspaces/`), the CLI's configuration and "
        "transcripts (`claude/`, the CLI's `CLAUDE_CONFIG_DIR`) and the session records "
        "(`sessions.sqlite3`). A restarted server resumes a known session on its next turn.",
        json_schema_extra={
            "shown_default": "the per-user data directory (`~/.local/share/ccactors` on Linux)"
        },
        examples=["/var/lib/ccactors"],
    )
    cli_path: Path | None = Field(
        None,
        description="The Claude Code executable. Unset: the CLI bundled with the locked "
        "`claude-agent-sdk`, else the first `claude` on `PATH`.",
        examples=["/usr/local/bin/claude"],
    )
    offline: bool = Field(
        False,
        description="Point every CLI at the built-in offline upstream (answers `echo: ...`, "
        "no credentials, nothing leaves the machine) instead of Anthropic's API.",
    )

    max_sessions: int = Field(1000, ge=1, description="Sessions held at once, live or hibernated.")
    max_live_sessions: int = Field(
        16,
        ge=1,
        description="CLI processes running at once (each ~170 MB), warm ones included. "
        "Needing one more hibernates the least recently used idle session.",
    )
    live_slot_wait_s: float = Field(
        10.0,
        ge=0,
        description="Seconds a session needing a CLI waits while every live one is busy, "
        "before its request gets 503 and `Retry-After`.",
    )
    max_live_sessions_per_key: int | None = Field(
        None,
        ge=1,
        description="Live CLIs one API key may hold; a key at its share hibernates its own "
        "idle session, else gets 429. Unset: half of `max_live_sessions` (at least 1). "
        "Only with API keys: with auth off every session has one owner and no share applies.",
        examples=[4],
    )
    warm_pool_size: int = Field(
        2,
        ge=0,
        description="Connected CLIs kept ready for new sessions, so their first reply does "
        "not wait for a CLI to start (not refilled while a session waits for a slot).",
    )
    warm_pool_warm_up: bool = Field(
        True,
        description="Have each warm CLI compute its context once before a session adopts "
        "it (Claude Code's /context, as a control request: nothing enters the "
        "conversation), which takes about half of the extra time off a new session's first "
        "reply. It costs ~11 count_tokens requests upstream per warm CLI (Anthropic does "
        "not bill them, but they count against that endpoint's rate limit).",
    )
    max_concurrent_starts: int | None = Field(
        None,
        ge=1,
        description="CLI processes starting at once (each start is about a second of CPU); "
        "more wait their turn, so a storm of new sessions leaves CPU for the running ones "
        "and no start outlasts the SDK's 60 s handshake. Unset: 8 per CPU (measured on 2 "
        "CPUs: the slowest first turn of 16 or 32 sessions opened at once comes sooner "
        "than with fewer at once).",
        examples=[2],
    )
    session_idle_ttl_s: float = Field(
        900.0,
        gt=0,
        description="Seconds without a turn before a session hibernates: its CLI is "
        "closed, its conversation kept, and its next turn resumes it on a new CLI.",
    )
    session_retention_s: float = Field(
        86_400.0,
        gt=0,
        description="Seconds without a turn before a hibernated session is forgotten.",
    )
    first_chunk_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a CLI may take to say anything after a prompt: then the turn "
        "fails (504 `timeout_error`), the CLI is killed and a new one resumes the session.",
    )
    stream_idle_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Seconds of silence mid-turn after which the turn fails (504) and is "
        "interrupted; the CLI is kept.",
    )
    interrupt_drain_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds an interrupted turn may take to end before its CLI is killed.",
    )
    prompt_write_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds writing a prompt (or a model switch) to a CLI may take; a CLI "
        "that takes none (stopped, wedged) is then killed, the turn fails (502) and the "
        "session restarts.",
    )
    max_restarts: int = Field(
        3,
        ge=0,
        description="Restart intensity: a session whose CLI is restarted more often than "
        "this within `restart_window_s` is closed.",
    )
    restart_window_s: float = Field(
        60.0, gt=0, description="Seconds over which `max_restarts` is counted."
    )
    on_disconnect: Literal["interrupt", "finish"] = Field(
        "interrupt",
        description="A client that goes away mid-turn: `interrupt` stops the turn (and its "
        "spending) at once; `finish` lets it complete. The session goes on either way.",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="Seconds running turns may take to finish on SIGINT or SIGTERM before "
        "they are interrupted.",
    )
    mailbox_size: int = Field(
        4,
        ge=1,
        description="Turns that may wait behind a session's running turn; one more gets "
        "429 and `Retry-After`.",
    )
    cli_close_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Seconds a CLI being closed gets to exit after SIGTERM, before SIGKILL.",
    )
    sse_ping_interval_s: float = Field(
        15.0,
        gt=0,
        description="Seconds without a byte on an SSE stream (a long tool call) after which "
        "a keep-alive (`ping` event or comment) is sent, so proxies keep the stream open.",
    )
    ws_ping_interval_s: float | None = Field(
        20.0,
        gt=0,
        description="Seconds between WebSocket protocol pings, which keep proxies from "
        "dropping a quiet connection. Unset: no pings.",
    )
    ws_idle_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Seconds a WebSocket may go without a client message, and with no "
        "turn of its own under way, before it is closed (1000, `idle timeout`).",
    )
    body_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds a request body may take to arrive; then 408 and the "
        "connection is closed.",
    )
    keep_alive_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Seconds a connection may take to send a request head after opening "
        "or after its last response, before it is closed.",
    )

    model: str | None = Field(
        None,
        description="The model every CLI starts with, and the default model of requests. "
        "Unset: Claude Code's own default.",
        examples=["claude-sonnet-4-6"],
    )
    model_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(CLAUDE_CODE_ALIASES),
        description="Model names requests may send, each with the Claude model id or "
        "Claude Code alias it runs (replaces the default: include it to keep it). Any "
        "`claude-*` id is accepted as is. See "
        "[models](operations.md#models-and-system-prompts).",
    )
    unknown_model: UnknownModel = Field(
        "default",
        description="A request's model that is neither an alias nor a Claude id (e.g. "
        "`gpt-4o`): `default` runs the default model, `refuse` is a 400.",
    )
    tools: list[str] = Field(
        default_factory=lambda: list(READ_ONLY_TOOLS),
        description="The built-in Claude Code tools the CLIs may use. By default only "
        "tools that read; nothing that writes files, runs commands or reaches the network.",
    )
    allowed_tools: list[str] = Field(
        default_factory=list,
        description="Tools pre-approved everywhere. Empty: reads inside the session's own "
        "workspace need no approval, and anything else (another session's files, the "
        "state directory) is refused.",
    )
    disallowed_tools: list[str] = Field(
        default_factory=lambda: list(ALWAYS_DISALLOWED_BY_DEFAULT),
        description="Tools always refused.",
    )
    permission_mode: Literal["default", "acceptEdits", "plan", "bypassPermissions", "ask"] = Field(
        "default",
        description="The CLI's permission mode, or `ask`: Claude Code's tool-permission "
        "questions go to the session's WebSocket clients (`permission_request`); with "
        "no client, or no answer within `permission_timeout_s`, the tool is denied.",
    )
    permission_timeout_s: float = Field(
        60.0,
        gt=0,
        description='With `permission_mode = "ask"`: seconds a question waits for an '
        "answer before the tool is denied.",
    )
    system_prompt: str | None = Field(
        None,
        description="The operator's text instead of Claude Code's system prompt. Unset: "
        "Claude Code's own.",
        examples=["You answer questions about our code base."],
    )
    append_system_prompt: str | None = Field(
        None,
        description="The operator's text appended to the system prompt (Claude Code's or "
        "`system_prompt`), always last.",
        examples=["Answer in English."],
    )
    client_system: Literal["instructions", "append", "ignore"] = Field(
        "instructions",
        description="What a client's system prompt (Anthropic `system`, OpenAI "
        "`system`/`developer` messages) does: `instructions` puts it ahead of the opening "
        "turn's message; `append` appends it to the session's system prompt, fixed by its "
        "opening turn (read by the CLI from a file; such a session starts its own CLI "
        "rather than a warm one); `ignore` drops it.",
    )
    slash_commands: list[str] = Field(
        default_factory=list,
        description='Claude Code slash commands users may run (e.g. `["compact"]`); a '
        "prompt starting with any other `/command` is the user's text, never a command.",
        examples=[["compact"]],
    )

    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Bytes of a request body, over which it is 413. Anthropic's own limit "
        "(32 MiB): room for a document at `max_document_bytes`, base64-encoded (4/3 of "
        "its bytes), and the rest of the request.",
    )
    max_messages: int = Field(
        10_000, ge=1, description="Messages in one request, over which it is 400."
    )
    max_prompt_chars: int = Field(
        1_000_000,
        ge=1,
        description="Characters of a turn's prompt text, over which it is 400 (images and "
        "documents are counted by the media limits).",
    )
    max_image_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1,
        description="Decoded bytes of each image a turn sends (without a session, the "
        "history's too), over which it is 413: Anthropic's limit, 5 MiB.",
    )
    max_document_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1,
        description="Decoded bytes of each document a turn sends (a plain-text one: its "
        "UTF-8 bytes), over which it is 413: Claude Code's own PDF limit, 20 MiB.",
    )
    max_media_blocks: int = Field(
        100,
        ge=0,
        description="Images and documents in one turn, over which it is 400 (Anthropic's "
        "and Claude Code's limit per request).",
    )

    max_turns_per_key: int = Field(
        16,
        ge=1,
        description="Turns one API key (with auth off: all callers) may have under way; "
        "one more gets 429 and `Retry-After`.",
    )
    max_sessions_per_key: int = Field(
        200,
        ge=1,
        description="Sessions one API key may hold; one more gets 429 and `Retry-After`.",
    )
    max_websockets_per_key: int = Field(
        16,
        ge=1,
        description="Open WebSockets one API key (with auth off: all callers) may hold; "
        "one more gets an error frame and is closed (1008).",
    )
    max_listeners_per_key: int = Field(
        16,
        ge=1,
        description="Open `/events` streams one API key (with auth off: all callers) may "
        "hold; one more gets 429 and `Retry-After`.",
    )

    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Accepted API keys, sent as `x-api-key` or `Authorization: Bearer`; "
        "each key sees only its own sessions. Empty (and no hash file): auth is off.",
        examples=[["a-long-random-key-for-alice"]],
    )
    api_key_hashes_file: Path | None = Field(
        None,
        description="A file of accepted keys' SHA-256 hex digests, one per line: keys "
        "that need not be stored in clear.",
        examples=["/etc/ccactors/keys.sha256"],
    )
    admin_api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Operator keys, needed (once any key is configured) for `/v1/stats`, "
        "`/metrics` and the dashboard's data; other keys get 403. An operator key is an "
        "API key too, with its own sessions. Same forms as `api_keys`.",
        examples=[["a-long-random-key-for-monitoring"]],
    )
    admin_api_key_hashes_file: Path | None = Field(
        None,
        description="A file of operator keys' SHA-256 hex digests, one per line.",
        examples=["/etc/ccactors/admin-keys.sha256"],
    )
    insecure_no_auth: bool = Field(
        False,
        description='Allow listening beyond loopback (or `allowed_hosts = ["*"]`) '
        "without API keys: anyone who can reach the server can run Claude Code.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (`https://app.example`) of web pages that may call the "
        "server (CORS); requests and WebSockets with any other `Origin` are refused (403). "
        "Empty: no web page may call it. See "
        "[security](security.md#web-pages-in-the-users-browser).",
        examples=[["https://chat.example.com"]],
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="`Host` names accepted besides loopback names, the bound host and IP "
        "addresses (e.g. a reverse proxy's public name); others are refused (421) against "
        'DNS rebinding. `["*"]` accepts any name: refused at start-up without API keys.',
        examples=[["ccactors.example.com"]],
    )

    log_level: str = Field(
        "INFO", description="The log level: `DEBUG`, `INFO`, `WARNING` or `ERROR`."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text` for people; `json`: one JSON object per line on stderr, with "
        "`request_id`, `session_id` and `turn_id` when known.",
    )

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
        description="This node's id in a cluster, named in every response's `X-Served-By` "
        "(default: host name and a random suffix).",
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
                resume_model=self.model,
                warm_up=self.warm_pool_warm_up,
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
