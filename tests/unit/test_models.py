"""A request's model and system prompt at the edge: how a model name resolves (the
table), how bad names are refused in each API's error format, what the responses name,
and what each ``client_system`` mode makes of a client's system prompt."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from actors import open_supervisor
from actors.testing import ScriptedClientFactory
from app._settings import Settings
from app.http._app import create_app
from app.http._pipeline import prepare_turn
from app.wire._codec import Message, TurnRequest
from app.wire._problems import RequestError

ANTHROPIC, OPENAI = "/v1/messages", "/v1/chat/completions"


def body(path: str, model: str, **fields) -> dict:
    base = {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}
    return {**base, "max_tokens": 16} if path == ANTHROPIC else base


@asynccontextmanager
async def open_client(settings: Settings, factory=None) -> AsyncIterator:
    """A quart test client of the app over a supervisor configured from ``settings``."""
    factory = factory or ScriptedClientFactory()
    async with open_supervisor(settings.supervisor_config(), factory) as supervisor:
        yield create_app(supervisor, settings).test_client()


def sse_data(raw: bytes) -> list[dict]:
    frames = []
    for chunk in raw.decode().split("\n\n"):
        for line in chunk.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                frames.append(json.loads(line.removeprefix("data: ")))
    return frames


RESOLUTION = [
    # (requested, settings, resolved)
    ("sonnet", {}, "sonnet"),
    ("opus", {}, "opus"),
    ("haiku", {"model": "claude-x-1"}, "haiku"),
    ("claude-sonnet-4-6", {}, "claude-sonnet-4-6"),
    ("claude-opus-4-1-20250805", {}, "claude-opus-4-1-20250805"),
    ("claude-sonnet-4-6[1m]", {}, "claude-sonnet-4-6[1m]"),
    ("gpt-4o", {}, "default"),
    ("gpt-4o", {"model": "claude-sonnet-4-6"}, "claude-sonnet-4-6"),
    ("anthropic/claude-sonnet-4.5", {}, "default"),
    ("Claude-Sonnet-4-6", {}, "default"),  # ids are lowercase: not one
    ("fast", {"model_aliases": {"fast": "claude-haiku-4-5"}}, "claude-haiku-4-5"),
    ("gpt-4o", {"model_aliases": {"gpt-4o": "sonnet"}, "unknown_model": "refuse"}, "sonnet"),
    ("sonnet", {"model_aliases": {"fast": "haiku"}}, "default"),  # the map replaces
    ("", {"unknown_model": "refuse"}, None),  # no name (a WebSocket turn): no switch
]


@pytest.mark.parametrize(("requested", "overrides", "resolved"), RESOLUTION)
def test_model_names_resolve_by_aliases_claude_ids_then_the_unknown_policy(
    tmp_path, requested, overrides, resolved
):
    """An alias runs its target; a Claude model id runs as is; any other well-formed
    name runs the server's default model (``model``, else Claude Code's ``default``)."""
    settings = Settings(state_dir=tmp_path, **overrides)
    assert settings.resolve_model(requested) == resolved


@pytest.mark.parametrize("policy", ["default", "refuse"])
@pytest.mark.parametrize(
    "malformed", [" sonnet", "claude sonnet", "claude-\n", "-x", "x" * 257, "model;rm", "é"]
)
def test_malformed_model_names_are_refused_under_either_policy(tmp_path, policy, malformed):
    """A model name that is not of the documented form is a 400 naming ``model``, even
    where an unknown name would run the default."""
    settings = Settings(state_dir=tmp_path, unknown_model=policy)
    with pytest.raises(RequestError) as refused:
        settings.resolve_model(malformed)
    assert refused.value.status == 400
    assert refused.value.param == "model"


def test_model_aliases_are_checked_at_start_up(tmp_path):
    """An alias (or its target) that is not a model name is a settings error."""
    with pytest.raises(ValueError, match="not a model name"):
        Settings(state_dir=tmp_path, model_aliases={"fast": "haiku --dangerous"})


@pytest.mark.parametrize("path", [ANTHROPIC, OPENAI])
async def test_bad_model_names_are_400s_in_each_apis_format(tmp_path, path):
    """A malformed name (any policy) and, under ``refuse``, a name that is no Claude
    model are 400 ``invalid_request_error`` in the API's own error JSON (OpenAI's names
    ``param: model``), saying which names are accepted; no session is started."""
    settings = Settings(state_dir=tmp_path, unknown_model="refuse", warm_pool_size=0)
    factory = ScriptedClientFactory()
    async with open_client(settings, factory) as client:
        malformed = await client.post(path, json=body(path, "claude\x00opus"))
        unknown = await client.post(path, json=body(path, "gpt-4o"))
        errors = [await malformed.get_json(), await unknown.get_json()]
    assert malformed.status_code == unknown.status_code == 400
    assert factory.clients == []
    if path == ANTHROPIC:
        assert {e["type"] for e in errors} == {"error"}
        assert {e["error"]["type"] for e in errors} == {"invalid_request_error"}
        messages = [e["error"]["message"] for e in errors]
    else:
        assert {e["error"]["type"] for e in errors} == {"invalid_request_error"}
        assert {e["error"]["param"] for e in errors} == {"model"}
        assert errors[1]["error"]["code"] == "model_not_found"
        messages = [e["error"]["message"] for e in errors]
    assert "not a model name" in messages[0]
    assert "'gpt-4o' is not a Claude model" in messages[1]
    assert "claude-..." in messages[1] and "haiku, opus, sonnet" in messages[1]


@pytest.mark.parametrize("path", [ANTHROPIC, OPENAI])
async def test_responses_name_the_model_that_ran(tmp_path, path):
    """A response names the model that answered; a stream, whose first frame goes out
    before Claude Code says, names the model asked of it (an alias's target, or the
    default for an unknown name) until then: OpenAI's finishing chunk names the one that
    answered (the fake CLI's own, as the default needed no switch)."""
    settings = Settings(
        state_dir=tmp_path, warm_pool_size=0, model_aliases={"fast": "claude-haiku-4-5"}
    )
    factory = ScriptedClientFactory()
    async with open_client(settings, factory) as client:
        whole = await (await client.post(path, json=body(path, "fast"))).get_json()
        streamed = await client.post(path, json=body(path, "gpt-4o", stream=True))
        frames = sse_data(await streamed.get_data())
    assert whole["model"] == "claude-haiku-4-5"
    if path == ANTHROPIC:
        assert frames[0]["message"]["model"] == "default"
    else:  # from the finishing chunk on, the model that answered
        assert [f["model"] for f in frames] == ["default", "default", "fake-model"]
    assert [c.set_model_calls for c in factory.clients] == [["claude-haiku-4-5"], []]


async def test_models_list_names_what_requests_may_send(tmp_path):
    """``/v1/models`` lists the server's model, Claude model ids and the alias names:
    each one a request may send."""
    settings = Settings(state_dir=tmp_path, model="claude-x-1", model_aliases={"fast": "haiku"})
    async with open_client(settings) as client:
        listed = [m["id"] for m in (await (await client.get("/v1/models")).get_json())["data"]]
        unknown = await client.get("/v1/models/sonnet")
    assert listed[0] == "claude-x-1"
    assert listed[-1] == "fast"
    assert "sonnet" not in listed
    assert all(settings.resolve_model(name) != "claude-x-1" for name in listed[1:])
    assert unknown.status_code == 404


MESSAGES = [
    Message("instructions", "Be brief."),
    Message("user", "one"),
    Message("assistant", "ok"),
    Message("instructions", "Now in French."),
    Message("user", "two"),
]


@pytest.mark.parametrize(
    ("mode", "in_session", "prompt", "system"),
    [
        (
            "instructions",
            True,
            "Instructions:\n\nNow in French.\n\nThe user's new message:\n\ntwo",
            None,
        ),
        ("ignore", True, "two", None),
        (
            "ignore",
            False,
            "The conversation so far:\n\nUser: one\n\nAssistant: ok"
            "\n\nThe user's new message:\n\ntwo",
            None,
        ),
        ("append", True, "two", "Be brief.\n\nNow in French."),
    ],
)
def test_client_system_modes(tmp_path, mode, in_session, prompt, system):
    """``instructions`` places the client's system prompt in the turn's message (as
    before); ``ignore`` drops it; ``append`` keeps it out of the message and gives it as
    the turn's addition to the session's system prompt (all of it, in order)."""
    from actors import SessionKey

    settings = Settings(state_dir=tmp_path, client_system=mode)
    request = TurnRequest(model="sonnet", messages=MESSAGES, size=len(MESSAGES))
    turn = prepare_turn(request, SessionKey("s") if in_session else None, settings)
    assert (turn.prompt, turn.system, turn.model) == (prompt, system, "sonnet")


def test_an_appended_system_prompt_is_held_to_the_prompt_limit(tmp_path):
    """The client's system text, appended, is held to ``max_prompt_chars`` like a prompt."""
    settings = Settings(state_dir=tmp_path, client_system="append", max_prompt_chars=10)
    messages = [Message("instructions", "x" * 11), Message("user", "hi")]
    with pytest.raises(RequestError, match="system prompt is too long: 11 characters"):
        prepare_turn(TurnRequest(model="m", messages=messages, size=2), None, settings)
