"""End to end: the official ``openai`` client against ``ccactors serve --offline``'s
Chat Completions front end, through the real Claude Code CLI.

Each new session id costs a CLI start, so these tests use few of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from .conftest import Server

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"


@pytest.fixture
def oai(server: Server) -> Iterator[openai.OpenAI]:
    """The official openai client, pointed at the shared server, without retries."""
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="test", max_retries=0, timeout=60
    ) as client:
        yield client


def chat(client: openai.OpenAI, session: str, prompt: str) -> str:
    """One non-streaming turn on ``session``; the reply's text."""
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        extra_headers={"X-Session-ID": session},
    )
    return completion.choices[0].message.content


def test_non_streaming_completion_carries_the_answer_and_usage(oai):
    """A request without a session id gets a ``chat.completion`` with the CLI's answer,
    the request's model, ``finish_reason`` stop and real token usage, on a new session
    whose server-minted id comes in ``X-Session-ID``."""
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}]
    )
    completion = raw.parse()
    assert raw.headers["X-Session-ID"].startswith("conv_")
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_streamed_completion_assembles_the_answer_and_ends_with_usage(oai):
    """A streaming request yields one content chunk per upstream chunk, a finish chunk,
    and (with ``include_usage``) a final usage chunk with no choices."""
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "stream me [[chunks=4]]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    with stream:
        chunks = list(stream)
    *with_choices, last = chunks
    assert with_choices[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in with_choices[1:-1]]
    assert len(pieces) == 4
    assert "".join(pieces) == "echo: stream me [[chunks=4]]"
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert last.choices == []
    assert last.usage.completion_tokens > 0
    assert last.usage.prompt_tokens > 0


def test_turns_of_one_session_continue_one_conversation(oai):
    """Three turns with one ``X-Session-ID`` see the whole conversation (count=1,2,3)
    although each request carries only the new message."""
    answers = [chat(oai, "e2e-openai-count", "[[count]]") for _ in range(3)]
    assert answers == ["count=1", "count=2", "count=3"]


def test_unsupported_request_is_a_bad_request_and_models_are_listed(oai):
    """``n=2`` raises ``openai.BadRequestError`` naming ``n``; ``models.list()`` parses and
    includes the Claude aliases. Neither starts a CLI."""
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "two please"}], n=2
        )
    assert refused.value.param == "n"
    assert refused.value.code == "unsupported_value"
    assert {"sonnet", "opus", "haiku"} <= {model.id for model in oai.models.list()}
