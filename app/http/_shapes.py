"""The shapes of what the server answers, as pydantic models: the OpenAPI document's
response schemas (``app.http._openapi``).

Requests are validated by their own models where they are parsed (``MessagesRequest``
in ``app.wire._anthropic``, ``ChatCompletionRequest`` in ``app.wire._openai``, the
WebSocket messages in ``app.wire._websocket``, the query models of
``app.http._management``); the document uses those same models. Responses are built as
plain dicts by the codecs and routes; these models say what those dicts hold, and the
schemathesis test (``tests/e2e/test_openapi_fuzz.py``) checks every response it gets
against them. Fields the routes always send are required; extra fields are allowed (a
client must ignore fields it does not know, as both APIs' own clients do).

Formats: Anthropic's Messages API documentation (the Message object, the error body),
OpenAI's API reference (``chat.completion``, the model list, the error body); the rest
is ccactors' own (README, "Endpoints").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# -- Errors ---------------------------------------------------------------------------


class AnthropicErrorDetail(BaseModel):
    type: str = Field(
        description="`invalid_request_error`, `authentication_error`, `permission_error`, "
        "`not_found_error`, `request_too_large`, `rate_limit_error`, `timeout_error`, "
        "`api_error` or `overloaded_error`"
    )
    message: str


class AnthropicError(BaseModel):
    """Anthropic's error body: every error outside the OpenAI routes."""

    type: Literal["error"]
    error: AnthropicErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(
        description="`invalid_request_error` (4xx), `rate_limit_error` (429) or "
        "`server_error` (5xx)"
    )
    param: str | None = Field(description="the request field at fault, if one is")
    code: str | None = Field(description="a machine-readable reason, if there is one")


class OpenAIError(BaseModel):
    """OpenAI's error body: every error of ``/v1/chat/completions`` and ``/v1/models``."""

    error: OpenAIErrorDetail


# -- Anthropic Messages ---------------------------------------------------------------


class AnthropicUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class TextBlock(BaseModel):
    type: Literal["text"]
    text: str


class ThinkingBlock(BaseModel):
    type: Literal["thinking"]
    thinking: str
    signature: str


class AnthropicMessage(BaseModel):
    """A Message object: the answer of a ``stream: false`` request."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str = Field(description="the model that answered (else the one requested)")
    content: list[TextBlock | ThinkingBlock]
    stop_reason: str | None
    stop_sequence: None
    usage: AnthropicUsage


class CountTokensRequest(BaseModel):
    """The body of ``POST /v1/messages/count_tokens``: a Messages request's ``messages``
    (and optionally ``system`` and ``tools``, which count too); other fields are
    accepted and ignored."""

    model_config = {"extra": "allow"}
    messages: list[Any]
    system: Any = None
    tools: Any = None


class TokenCount(BaseModel):
    input_tokens: int = Field(
        description="an estimate: the request's JSON characters / 4 (images and documents "
        "counted apart); the exact count is in each turn's usage"
    )


# -- OpenAI Chat Completions ----------------------------------------------------------


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    refusal: None = None
    annotations: list[Any] = []


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length", "content_filter"]


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class ChatCompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class ChatCompletion(BaseModel):
    """A ``chat.completion`` object: the answer of a non-streaming request."""

    id: str
    object: Literal["chat.completion"]
    created: int = Field(description="Unix time, seconds")
    model: str
    system_fingerprint: None = None
    choices: list[ChatCompletionChoice]
    usage: ChatCompletionUsage


class Model(BaseModel):
    """A model a request may name."""

    id: str
    object: Literal["model"]
    created: int = Field(description="Unix time the server started, seconds")
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


# -- Management -----------------------------------------------------------------------


class ForkParent(BaseModel):
    id: str = Field(description="the session this one forked from")
    turn: int = Field(description="how many turns of it this session started from")


class LineageHead(BaseModel):
    turn: int = Field(description="completed turns")
    hash: str = Field(description="the lineage hash after them")


class Session(BaseModel):
    """A session as the management API shows it."""

    id: str
    state: str = Field(description="`starting`, `idle`, `busy`, `closing` (or `hibernated`)")
    live: bool = Field(description="a CLI process is running for it")
    hibernated: bool
    cli_pid: int | None
    claude_session_id: str | None
    model: str | None
    turns: int
    restarts: int
    last_error: str | None
    listeners: int
    created_at: str = Field(description="ISO 8601, UTC")
    last_active_at: str = Field(description="ISO 8601, UTC")
    mailbox_depth: int = Field(description="turns waiting behind the running one")
    parent: ForkParent | None
    lineage_head: LineageHead | None


class SessionPage(BaseModel):
    """One page of sessions, oldest first (Anthropic's list shape)."""

    data: list[Session]
    has_more: bool
    first_id: str | None
    last_id: str | None


class TranscriptMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: list[dict[str, Any]] = Field(
        description="content blocks as the CLI's transcript holds them: `text`, "
        "`thinking`, `tool_use`, `tool_result`"
    )


class SessionMessages(BaseModel):
    """A session's conversation, from its CLI's transcript."""

    id: str
    claude_session_id: str | None
    data: list[TranscriptMessage]


class SessionDeleted(BaseModel):
    id: str
    type: Literal["session_deleted"]
    transcripts_deleted: int = Field(description="transcript files deleted")


class Interrupted(BaseModel):
    id: str
    interrupted: bool = Field(description="a turn was running and was told to stop")


class Timeouts(BaseModel):
    first_chunk: int
    stream_idle: int


class Stats(BaseModel):
    """Counters for operators; in a cluster also the node's (``node``, ``leases``,
    ``hand_offs``, ``take_overs``, ``leases_lost``, hand-off requests, fenced writes)."""

    sessions: int
    live_sessions: int
    hibernated_sessions: int
    busy_sessions: int
    live_processes: int
    warm_pool_size: int
    warm_pids: list[int]
    waiting_turns: int
    max_mailbox_depth: int
    restarts: int
    sessions_failed: int
    forks: int
    dead_letters: int
    listener_drops: int
    timeouts: Timeouts
    store_errors: int | None = Field(None, description="with a session store")
    store_writes_dropped: int | None = None
    store_writes_fenced: int | None = Field(None, description="refused: lease lost (cluster)")
    store_reconnects: int | None = None
    node: str | None = Field(None, description="in a cluster: this node's id")


class Health(BaseModel):
    status: Literal["ok", "draining"]


class Service(BaseModel):
    service: Literal["ccactors"]
    apis: list[str]


# -- Dashboard ------------------------------------------------------------------------


class Latency(BaseModel):
    p50: float | None = Field(description="seconds; null before any observation")
    p95: float | None
    observations: int


class Peer(BaseModel):
    """A node of the cluster, as of this node's last lease renewal."""

    node: str
    last_seen_s: float = Field(description="seconds since it last renewed its leases")
    sessions: int = Field(description="sessions it holds")
    this: bool = Field(description="whether it is the node answering")


class Overview(BaseModel):
    """The dashboard's overview figures."""

    node: str | None
    nodes: list[Peer] | None = Field(None, description="every node, in a cluster")
    live_processes: int
    max_live_sessions: int
    warm_pool_size: int
    warm_pool_target: int
    sessions: int
    live_sessions: int
    hibernated_sessions: int
    busy_sessions: int
    waiting_turns: int
    turns_per_minute: int
    first_token_latency_s: Latency
    restarts: int
    dead_letters: int
    timeouts: Timeouts
    forks: int | None


class DashboardSession(Session):
    owner: str = Field(description="16 hex digits (its API key's digest), or `-`")
    address: str = Field(description="`<owner>/<id>`")
    node: str | None = Field(None, description="in a cluster: the node driving it, if any")


class DashboardSessionPage(BaseModel):
    data: list[DashboardSession]
    has_more: bool
    first_id: str | None
    last_id: str | None


class Snapshot(BaseModel):
    """The data of a ``snapshot`` event of ``/v1/dashboard/stream``."""

    overview: Overview
    sessions: DashboardSessionPage


class DashboardConversation(BaseModel):
    session: DashboardSession
    messages: list[TranscriptMessage]


class DashboardInterrupted(Interrupted):
    owner: str


class DashboardDeleted(SessionDeleted):
    owner: str


# -- WebSocket frames (server to client; besides the session's events) ----------------


class SessionFrame(BaseModel):
    """The first frame of a connection."""

    type: Literal["session"]
    id: str
    exists: bool
    state: str | None
    live: bool


class TurnAcceptedFrame(BaseModel):
    """To the sender of a ``turn`` message: it is queued."""

    type: Literal["turn_accepted"]
    turn_id: str
    id: str | None = Field(None, description="the message's own `id`, if it had one")


class InterruptResultFrame(BaseModel):
    type: Literal["interrupt_result"]
    interrupted: bool
    id: str | None = None


class PermissionResultFrame(BaseModel):
    type: Literal["permission_result"]
    request_id: str
    accepted: bool = Field(description="the answer reached a question still waiting")
    id: str | None = None


class FrameErrorDetail(AnthropicErrorDetail):
    retry_after_s: int | None = Field(None, description="seconds, for a refused turn")


class ErrorFrame(BaseModel):
    """A bad client message or a refused turn (the connection stays open), or why the
    connection is being closed (code 1008)."""

    type: Literal["error"]
    error: FrameErrorDetail
    id: str | None = None
