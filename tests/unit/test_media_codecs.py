"""Images and documents in both HTTP APIs' requests: what each codec accepts (as
canonical Anthropic blocks, the same for the same attachment) and what it refuses (400
naming the field, in the API's own error format, before any turn starts)."""

from __future__ import annotations

import pytest

from actors.testing import ScriptedClientFactory
from app.wire._anthropic import AnthropicCodec
from app.wire._media import MediaPart, canonical_json
from app.wire._openai import OpenAICodec
from tests.media import (
    GIF,
    PDF,
    PDF_BLOCK,
    PNG,
    PNG_BLOCK,
    anthropic_body,
    b64,
    data_url,
    image_block,
    image_url,
    openai_body,
    pdf_block,
    text,
    user,
)

from .serving import open_client

# -- What the codecs accept ------------------------------------------------------------


def test_anthropic_images_and_documents_become_canonical_blocks_in_request_order():
    """Every supported image and document form is kept, in request order, with only the
    fields Anthropic documents (``cache_control`` and unknown fields dropped); the text
    blocks are the message's text; each block's decoded size is measured."""
    body = anthropic_body(
        user(
            text("look"),
            {**PNG_BLOCK, "cache_control": {"type": "ephemeral"}, "junk": 1},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {
                **PDF_BLOCK,
                "title": "T",
                "context": "C",
                "citations": {"enabled": True},
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "é"},
            },
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
            text("and this"),
        )
    )
    request = AnthropicCodec().parse(body, {})
    [message] = request.messages
    assert message.text == "look\nand this"
    assert message.media == (
        PNG_BLOCK,
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {**PDF_BLOCK, "title": "T", "context": "C", "citations": {"enabled": True}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "é"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
    )
    assert request.media_parts == [
        MediaPart("messages.0.content.1.source.data", "image", len(PNG)),
        MediaPart("messages.0.content.2.source.url", "image", 0),
        MediaPart("messages.0.content.3.source.data", "document", len(PDF)),
        MediaPart("messages.0.content.4.source.data", "document", 2),
        MediaPart("messages.0.content.5.source.url", "document", 0),
    ]


def test_openai_image_and_file_parts_become_the_anthropic_blocks():
    """A data-URL image is the same block as Anthropic's base64 image (so hashes agree:
    ``canonical_json`` too), an https URL a URL image, and a ``file`` part's base64 PDF
    (a data URL or bare) a PDF document titled with its ``filename``."""
    body = openai_body(
        user(
            text("see"),
            image_url(data_url(PNG)),
            image_url("https://example.com/a.png"),
            {
                "type": "file",
                "file": {"file_data": data_url(PDF, "application/pdf"), "filename": "a.pdf"},
            },
            {"type": "file", "file": {"file_data": b64(PDF)}},
        )
    )
    request = OpenAICodec().parse(body, {})
    [message] = request.messages
    assert message.text == "see"
    assert message.media == (
        PNG_BLOCK,
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {**PDF_BLOCK, "title": "a.pdf"},
        PDF_BLOCK,
    )
    anthropic = AnthropicCodec().parse(anthropic_body(user(PNG_BLOCK)), {})
    assert canonical_json(message.media[0]) == canonical_json(anthropic.messages[0].media[0])
    assert [part.field for part in request.media_parts] == [
        "messages[0].content[1].image_url.url",
        "messages[0].content[2].image_url.url",
        "messages[0].content[3].file.file_data",
        "messages[0].content[4].file.file_data",
    ]


# -- What they refuse ------------------------------------------------------------------

BAD_ANTHROPIC = {
    "unsupported image type": (
        image_block(PNG, "image/bmp"),
        "messages.0.content.0.source.media_type",
    ),
    "image file source": (
        {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
        "messages.0.content.0.source.type",
    ),
    "no source": ({"type": "image"}, "messages.0.content.0.source"),
    "bad base64": (
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "ab!d"}},
        "messages.0.content.0.source.data",
    ),
    "base64 with a line break": (
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG) + "\n"},
        },
        "messages.0.content.0.source.data",
    ),
    "unpadded base64": (
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw"},
        },
        "messages.0.content.0.source.data",
    ),
    "empty data": (
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}},
        "messages.0.content.0.source.data",
    ),
    "not an image": (
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": b64(b"hello")},
        },
        "messages.0.content.0.source.data",
    ),
    "a GIF declared PNG": (image_block(GIF, "image/png"), "messages.0.content.0.source.data"),
    "http image URL": (
        {"type": "image", "source": {"type": "url", "url": "http://example.com/a.png"}},
        "messages.0.content.0.source.url",
    ),
    "URL with a line break": (
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a\n.png"}},
        "messages.0.content.0.source.url",
    ),
    "file image URL": (
        {"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}},
        "messages.0.content.0.source.url",
    ),
    "base64 document not a PDF": (
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "text/plain", "data": b64(b"hi")},
        },
        "messages.0.content.0.source.media_type",
    ),
    "PDF that is not one": (pdf_block(PNG), "messages.0.content.0.source.data"),
    "text document as HTML": (
        {"type": "document", "source": {"type": "text", "media_type": "text/html", "data": "<p>"}},
        "messages.0.content.0.source.media_type",
    ),
    "content document source": (
        {"type": "document", "source": {"type": "content", "content": [text("a")]}},
        "messages.0.content.0.source.type",
    ),
    "title not a string": ({**PDF_BLOCK, "title": 5}, "messages.0.content.0.title"),
    "citations not an object": ({**PDF_BLOCK, "citations": True}, "messages.0.content.0.citations"),
}


@pytest.mark.parametrize("case", BAD_ANTHROPIC, ids=list(BAD_ANTHROPIC))
async def test_bad_anthropic_media_is_a_400_naming_the_field(tmp_path, case):
    """An unsupported or malformed image or document block is a 400
    ``invalid_request_error`` whose message starts with the offending field; no turn
    starts."""
    block, field = BAD_ANTHROPIC[case]
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, factory=factory) as client:
        response = await client.post(
            "/v1/messages", json=anthropic_body(user(block, text("what is it?")))
        )
        error = (await response.get_json())["error"]
    assert response.status_code == 400, error
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{field}: "), error
    assert factory.clients == []


async def test_anthropic_media_outside_user_messages_is_a_400(tmp_path):
    """An image in an assistant message is refused, naming the block."""
    messages = [user(text("a")), {"role": "assistant", "content": [PNG_BLOCK]}, user(text("b"))]
    async with open_client(tmp_path) as client:
        response = await client.post("/v1/messages", json=anthropic_body(*messages))
        error = (await response.get_json())["error"]
    assert response.status_code == 400
    assert error["message"].startswith("messages.1.content.0: image blocks can only be in user")


URL = "messages[0].content[0].image_url.url"
FILE_DATA = "messages[0].content[0].file.file_data"
BAD_OPENAI = {
    "http URL": (image_url("http://example.com/a.png"), URL, "unsupported_value"),
    "file URL": (image_url("file:///etc/passwd"), URL, "unsupported_value"),
    "ftp URL": (image_url("ftp://example.com/a.png"), URL, "unsupported_value"),
    "https URL without a host": (image_url("https:///a.png"), URL, "unsupported_value"),
    "no URL": ({"type": "image_url", "image_url": {}}, URL, "unsupported_value"),
    "data URL not base64": (image_url("data:image/png,abc"), URL, None),
    "data URL without a comma": (image_url("data:image/png;base64"), URL, None),
    "data URL of an unsupported type": (
        image_url(data_url(PNG, "image/bmp")),
        URL,
        "unsupported_value",
    ),
    "data URL of bad base64": (image_url("data:image/png;base64,!!!!"), URL, None),
    "data URL of a GIF declared PNG": (image_url(data_url(GIF)), URL, None),
    "uploaded file id": (
        {"type": "file", "file": {"file_id": "file-1"}},
        "messages[0].content[0].file.file_id",
        "unsupported_parameter",
    ),
    "file of an image type": (
        {"type": "file", "file": {"file_data": data_url(PNG)}},
        FILE_DATA,
        "unsupported_value",
    ),
    "file that is not a PDF": (
        {"type": "file", "file": {"file_data": b64(b"hello")}},
        FILE_DATA,
        None,
    ),
    "audio": (
        {"type": "input_audio", "input_audio": {}},
        "messages[0].content[0].type",
        "unsupported_value",
    ),
}


@pytest.mark.parametrize("case", BAD_OPENAI, ids=list(BAD_OPENAI))
async def test_bad_openai_media_is_a_400_with_param(tmp_path, case):
    """An image or file part that cannot be passed on (another URL scheme, a malformed
    data URL, an unsupported type, an uploaded file id) is a 400 in OpenAI's format whose
    ``param`` names it; no turn starts."""
    part, param, code = BAD_OPENAI[case]
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, factory=factory) as client:
        response = await client.post(
            "/v1/chat/completions", json=openai_body(user(part, text("what is it?")))
        )
        error = (await response.get_json())["error"]
    assert response.status_code == 400, error
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert factory.clients == []


async def test_openai_media_outside_user_messages_is_a_400(tmp_path):
    """Images are for user messages: one in a system message is refused by type."""
    messages = [{"role": "system", "content": [image_url(data_url(PNG))]}, user(text("a"))]
    async with open_client(tmp_path) as client:
        response = await client.post("/v1/chat/completions", json=openai_body(*messages))
        error = (await response.get_json())["error"]
    assert response.status_code == 400
    assert error["param"] == "messages[0].content[0].type"
