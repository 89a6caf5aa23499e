"""Turns with images and documents, over the scripted fake client: the media limits
(413 and 400 in each API's format, applied to what a turn sends), the prompt a turn
sends (text first, then media in request order; a stateless request's earlier media
once), and the token estimate."""

from __future__ import annotations

from actors.testing import ScriptedClientFactory
from app._settings import Settings
from app.wire._anthropic import IMAGE_TOKENS
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
    pdf,
    pdf_block,
    png,
    text,
    user,
)

from .serving import open_client

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
    """With a session that holds the conversation the history is not resent, so its
    images neither count towards ``max_media_blocks`` nor meet the byte limits: a long,
    image-heavy conversation (here with an image over ``max_image_bytes`` long ago) goes
    on. (The session exists, so a history it does not know continues it: lineage's rule
    for a known session id.)"""
    settings = Settings(state_dir=tmp_path, max_media_blocks=1, max_image_bytes=len(PNG))
    messages = [
        user(image_block(png(4, 4)), PNG_BLOCK),
        {"role": "assistant", "content": "ok"},
        user(text("and this?"), PNG_BLOCK),
    ]
    factory = ScriptedClientFactory()
    async with open_client(tmp_path, settings, factory) as client:
        for body in (anthropic_body(user(text("hello"))), anthropic_body(*messages)):
            response = await client.post("/v1/messages", json=body, headers={"X-Session-ID": "s"})
            assert response.status_code == 200
    assert factory.clients[0].sent == ["hello", [text("and this?"), PNG_BLOCK]]


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
    """In a new conversation the history's images and documents come along as blocks after
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
        requests = [
            ({}, messages),  # a new conversation: all of it
            ({"X-Session-ID": "s"}, [user(text("hello"))]),  # session s starts
            ({"X-Session-ID": "s"}, messages),  # s continues: only the new message
        ]
        for headers, sent in requests:
            response = await client.post(
                "/v1/messages", json=anthropic_body(*sent), headers=headers
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
    assert session.sent == ["hello", [text("and both?"), gif]]


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
