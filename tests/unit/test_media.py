"""Images and documents through both HTTP APIs, over the scripted fake client: what each
codec accepts (as canonical Anthropic blocks) and refuses (400 naming the field, in the
API's own error format), the media limits (413 and 400), and the prompt a turn sends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from actors import SupervisorConfig, open_supervisor
from actors.testing import ScriptedClientFactory
from app._settings import Settings
from app.http._app import create_app
from app.wire._anthropic import IMAGE_TOKENS, AnthropicCodec
from app.wire._media import MediaPart, canonical_json
from app.wire._openai import OpenAICodec
from tests.media import GIF, b64, data_url, image_block, pdf, pdf_block, png

PNG = png()
PDF = pdf()
PNG_BLOCK = {
    "type": "image",
    "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)},
}
PDF_BLOCK = {
    "type": "document",
    "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
}


def anthropic_body(*messages: dict, **fields) -> dict:
    return {"model": "m", "max_tokens": 10, "messages": list(messages), **fields}


def openai_body(*messages: dict, **fields) -> dict:
    return {"model": "m", "messages": list(messages), **fields}


def user(*content) -> dict:
    return {"role": "user", "content": list(content)}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def image_url(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


@asynccontextmanager
async def open_client(tmp_path, settings=None, factory=None) -> AsyncIterator:
    """A quart test client of ``create_app`` over a supervisor with ``factory``."""
    settings = settings or Settings(state_dir=tmp_path)
    config = SupervisorConfig(workspace_root=tmp_path)
    async with open_supervisor(config, factory or ScriptedClientFactory()) as supervisor:
        yield create_app(supervisor, settings).test_client()


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


# -- Limits ----------------------------------------------------------------------------


async def test_media_over_a_byte_limit_is_413_in_each_apis_format(tmp_path):
    """An image one byte over ``max_image_bytes`` (decoded), or a document over
    ``max_document_bytes``, is 413: ``request_too_large`` in Anthropic's format, OpenAI's
    error with the part as ``param``. At the limit exactly it is accepted."""
    settings = Settings(
        state_dir=tmp_path, max_image_bytes=len(PNG), max_document_bytes=len(PDF) - 1
    )
    big_png = png(2, 1)
    assert len(big_png) > len(PNG)
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, settings, factory) as client:
        fits = await client.post("/v1/messages", json=anthropic_body(user(PNG_BLOCK)))
        assert fits.status_code == 200
        over = [
            await client.post("/v1/messages", json=anthropic_body(user(image_block(big_png)))),
            await client.post("/v1/messages", json=anthropic_body(user(text("a"), PDF_BLOCK))),
            await client.post(
                "/v1/chat/completions", json=openai_body(user(image_url(data_url(big_png))))
            ),
        ]
        errors = [(await response.get_json())["error"] for response in over]
    assert [response.status_code for response in over] == [413, 413, 413]
    assert errors[0]["type"] == errors[1]["type"] == "request_too_large"
    assert errors[0]["message"] == (
        f"messages.0.content.0.source.data: the image is {len(big_png)} bytes, over the "
        f"limit of {len(PNG)} bytes (decoded)"
    )
    assert errors[1]["message"].startswith("messages.0.content.1.source.data: the document is")
    assert errors[2]["type"] == "invalid_request_error"
    assert errors[2]["param"] == "messages[0].content[0].image_url.url"
    assert len(factory.clients) == 1  # only the request that fit started a turn


async def test_more_media_than_max_media_blocks_is_a_400_on_both_apis(tmp_path):
    """Without a session the history's images and documents come along, so they count:
    one more than ``max_media_blocks`` in all is a 400 on both APIs."""
    settings = Settings(state_dir=tmp_path, max_media_blocks=2)
    anthropic = [
        user(PNG_BLOCK),
        {"role": "assistant", "content": "ok"},
        user(PNG_BLOCK, PDF_BLOCK),
    ]
    image = image_url(data_url(PNG))
    openai = [user(image), {"role": "assistant", "content": "ok"}, user(image, image)]
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, settings, factory) as client:
        first = await client.post("/v1/messages", json=anthropic_body(*anthropic))
        second = await client.post("/v1/chat/completions", json=openai_body(*openai))
        errors = [(await first.get_json())["error"], (await second.get_json())["error"]]
    assert (first.status_code, second.status_code) == (400, 400)
    assert errors[0]["message"].startswith("too many images and documents: 3 (at most 2")
    assert errors[1]["param"] == "messages"
    assert factory.clients == []


async def test_with_a_session_only_the_new_messages_media_count(tmp_path):
    """With a session the history is not resent, so its images neither count towards
    ``max_media_blocks`` nor meet the byte limits: a long, image-heavy conversation
    (here with an image over ``max_image_bytes`` long ago) goes on."""
    settings = Settings(state_dir=tmp_path, max_media_blocks=1, max_image_bytes=len(PNG))
    messages = [
        user(image_block(png(4, 4)), PNG_BLOCK),
        {"role": "assistant", "content": "ok"},
        user(text("and this?"), PNG_BLOCK),
    ]
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, settings, factory) as client:
        response = await client.post(
            "/v1/messages", json=anthropic_body(*messages), headers={"X-Session-ID": "s"}
        )
        assert response.status_code == 200
    assert factory.clients[0].sent == [[text("and this?"), PNG_BLOCK]]


async def test_a_document_at_the_default_limit_fits_the_default_body_and_prompt_limits(tmp_path):
    """With default settings a PDF of exactly ``max_document_bytes`` is accepted: its
    base64 fits ``max_body_bytes``, and it does not count as prompt characters."""
    settings = Settings(state_dir=tmp_path)
    document = pdf(settings.max_document_bytes)
    body = anthropic_body(user(pdf_block(document), text("summarise")))
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, settings, factory) as client:
        response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200
    [session] = factory.clients
    assert session.sent[0][1]["source"]["data"] == b64(document)


# -- The prompt ------------------------------------------------------------------------


async def test_a_turn_with_media_sends_the_text_block_first_then_the_media_in_order(tmp_path):
    """The prompt is a block list: the message's text first, then its images and
    documents in request order (wherever the text was among them)."""
    factory = ScriptedClientFactory()
    url_image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    body = anthropic_body(user(PNG_BLOCK, text("compare"), url_image, PDF_BLOCK))
    async with open_client(tmp_path, factory=factory) as client:
        response = await client.post("/v1/messages", json=body, headers={"X-Session-ID": "s"})
        assert response.status_code == 200
        text_only = await client.post(
            "/v1/messages",
            json=anthropic_body(user(text("and now?"))),
            headers={"X-Session-ID": "s"},
        )
        assert text_only.status_code == 200
    [session] = factory.clients
    assert session.sent == [[text("compare"), PNG_BLOCK, url_image, PDF_BLOCK], "and now?"]


async def test_the_same_image_and_text_request_gives_the_same_prompt_on_both_apis(tmp_path):
    """An Anthropic base64 image and an OpenAI data URL of the same bytes, with the same
    text and history, become the same prompt."""
    factory = ScriptedClientFactory()
    history_a = [user(text("hi")), {"role": "assistant", "content": "hello"}]
    async with open_client(tmp_path, factory=factory) as client:
        anthropic = await client.post(
            "/v1/messages",
            json=anthropic_body(*history_a, user(text("what is this?"), PNG_BLOCK)),
        )
        openai = await client.post(
            "/v1/chat/completions",
            json=openai_body(*history_a, user(text("what is this?"), image_url(data_url(PNG)))),
        )
        assert (anthropic.status_code, openai.status_code) == (200, 200)
    first, second = factory.clients
    assert first.sent == second.sent
    assert first.sent[0] == [
        text(
            "The conversation so far:\n\nUser: hi\n\nAssistant: hello\n\n"
            "The user's new message:\n\nwhat is this?\n[attached below: image 1]"
        ),
        PNG_BLOCK,
    ]


async def test_earlier_media_of_a_stateless_request_come_along_once_named_in_the_context(
    tmp_path,
):
    """Without a session the history's images and documents come along as blocks after
    the text, each named in the context where its message is; with a session only the
    new message's media are sent (the session's CLI holds the rest)."""
    factory = ScriptedClientFactory()
    messages = [
        user(text("look"), PNG_BLOCK),
        {"role": "assistant", "content": "a red pixel"},
        user(PDF_BLOCK),
        {"role": "assistant", "content": "a blank page"},
        user(text("and both?"), image_block(GIF, "image/gif")),
    ]
    async with open_client(tmp_path, factory=factory) as client:
        for headers in ({}, {"X-Session-ID": "s"}):
            response = await client.post(
                "/v1/messages", json=anthropic_body(*messages), headers=headers
            )
            assert response.status_code == 200
    stateless, session = factory.clients
    gif = image_block(GIF, "image/gif")
    assert stateless.sent == [
        [
            text(
                "The conversation so far:\n\n"
                "User: look\n[attached below: image 1]\n\n"
                "Assistant: a red pixel\n\n"
                "User: [attached below: document 2]\n\n"
                "Assistant: a blank page\n\n"
                "The user's new message:\n\nand both?\n[attached below: image 3]"
            ),
            PNG_BLOCK,
            PDF_BLOCK,
            gif,
        ]
    ]
    assert session.sent == [[text("and both?"), gif]]


async def test_a_message_of_only_an_image_is_a_turn_of_only_that_image(tmp_path):
    """A user message with an image and no text is a turn; its prompt has no empty text
    block. A message with neither is still refused."""
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, factory=factory) as client:
        response = await client.post("/v1/messages", json=anthropic_body(user(PNG_BLOCK)))
        assert response.status_code == 200
        empty = await client.post("/v1/messages", json=anthropic_body(user(text(" "))))
        assert empty.status_code == 400
    assert factory.clients[0].sent == [[PNG_BLOCK]]


async def test_a_slash_command_before_an_image_is_still_sent_as_text(tmp_path):
    """The text block comes first, so a command in it is neutralised as in a text turn
    (one leading space): an image does not smuggle ``/cost`` past the rule."""
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, factory=factory) as client:
        body = openai_body(user(text("/cost"), image_url(data_url(PNG))))
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
    assert factory.clients[0].sent == [[text(" /cost"), PNG_BLOCK]]


async def test_count_tokens_counts_an_image_by_its_place_not_its_base64(tmp_path):
    """``count_tokens`` counts an image as ``IMAGE_TOKENS`` and a base64 PDF by its
    decoded bytes, so a large photo does not read as a million tokens (Claude Code, as a
    client, would take its context for full)."""
    photo = png()[:16].ljust(1024 * 1024, b"\0")
    plain = anthropic_body(user(text("what is this?")))
    with_image = anthropic_body(user(text("what is this?"), image_block(photo)))
    with_pdf = anthropic_body(user(text("what is this?"), pdf_block(pdf(4000))))
    async with open_client(tmp_path) as client:
        counts = []
        for body in (plain, with_image, with_pdf):
            response = await client.post("/v1/messages/count_tokens", json=body)
            counts.append((await response.get_json())["input_tokens"])
    assert counts[1] == counts[0] + IMAGE_TOKENS
    assert counts[2] == counts[0] + 4000 // 4
