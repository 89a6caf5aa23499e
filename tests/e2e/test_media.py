"""End to end: images and documents through the official ``anthropic`` and ``openai``
clients, ``ccactors serve --offline`` and the real Claude Code CLI, to the offline
upstream, whose ``[[media]]`` counts the blocks of the user message as the CLI sent it.

One session (one CLI) carries every accepted turn; refused requests start none.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.media import b64, data_url, image_block, pdf, pdf_block, png

from .conftest import MODEL, Server

pytestmark = pytest.mark.e2e

SESSION = {"X-Session-ID": "media-e2e"}


@pytest.fixture
def oai(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="test", max_retries=0, timeout=60
    ) as client:
        yield client


def test_an_image_and_a_pdf_reach_claude_as_blocks_through_both_apis(client, oai, server):
    """A base64 PNG and a PDF sent through either API reach the upstream Messages request
    as one image and one document block of the user message, whatever the blocks' order
    in the request; URL sources and a plain-text document pass through too. All on one
    session: one CLI."""
    through_anthropic = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    image_block(png()),
                    pdf_block(pdf()),
                    {"type": "text", "text": "what are these? [[media]]"},
                ],
            }
        ],
        extra_headers=SESSION,
    )
    through_openai = oai.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and these? [[media]]"},
                    {"type": "image_url", "image_url": {"url": data_url(png(2, 2))}},
                    {
                        "type": "file",
                        "file": {
                            "file_data": data_url(pdf(), "application/pdf"),
                            "filename": "a.pdf",
                        },
                    },
                ],
            }
        ],
        extra_headers=SESSION,
    )
    by_url = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "from the web [[media]]"},
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.png"},
                    },
                    {
                        "type": "document",
                        "source": {"type": "url", "url": "https://example.com/a.pdf"},
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                    },
                ],
            }
        ],
        extra_headers=SESSION,
    )
    assert through_anthropic.content[0].text == "images=1 documents=1"
    assert through_openai.choices[0].message.content == "images=1 documents=1"
    assert by_url.content[0].text == "images=1 documents=2"
    assert server.session("media-e2e")["turns"] == 3


def test_an_oversized_image_is_a_413_in_each_apis_format(client, oai, server):
    """An image one byte over the default ``max_image_bytes`` (5 MiB decoded) is refused
    before any turn: ``anthropic.RequestTooLargeError`` (``request_too_large``) and
    OpenAI's 413 naming the part as ``param``."""
    limit = 5 * 1024 * 1024
    oversized = png()[:16].ljust(limit + 1, b"\0")  # the signature is all that is read
    with pytest.raises(anthropic.RequestTooLargeError) as refused:
        client.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=[
                {"role": "user", "content": [image_block(oversized), {"type": "text", "text": "?"}]}
            ],
            extra_headers={"X-Session-ID": "media-too-large"},
        )
    assert refused.value.body["error"]["type"] == "request_too_large"
    assert f"over the limit of {limit} bytes" in refused.value.body["error"]["message"]
    with pytest.raises(openai.APIStatusError) as refused_openai:
        oai.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{b64(oversized)}"},
                        }
                    ],
                }
            ],
            extra_headers={"X-Session-ID": "media-too-large"},
        )
    assert refused_openai.value.status_code == 413
    assert refused_openai.value.body["param"] == "messages[0].content[0].image_url.url"
    session = httpx.get(f"{server.url}/v1/sessions/media-too-large", timeout=10)
    assert session.status_code == 404  # no turn was started
