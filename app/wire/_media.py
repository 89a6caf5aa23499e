"""Images and documents of a request, as Anthropic content blocks: checked and canonical.

Both HTTP APIs hand media to Claude Code as blocks of the user message, in the forms
Anthropic's Messages API documents: ``image`` blocks with a ``base64`` source
(``image/jpeg``, ``image/png``, ``image/gif``, ``image/webp``) or a ``url`` source, and
``document`` blocks with a ``base64`` PDF (``application/pdf``), a ``text`` source
(``text/plain``) or a ``url`` PDF. The codecs build them with the functions here; nothing
is fetched by ccactors (a URL goes to Claude as a URL).

**Canonical form.** Every block made here holds only the fields Anthropic documents for
it, in one order: ``{"type", "source": {"type", "media_type", "data"} or {"type",
"url"}}``, and for documents ``title``, ``context`` (strings) and ``citations``
(``{"enabled": bool}``) when given. Whatever else a client sent (``cache_control``,
unknown fields) is dropped. So the same attachment is the same dict whichever API or
client sent it; ``canonical_json`` is its byte form, for hashing.

**Checks** (each a ``RequestError`` naming the field, as ``param`` and in the message):

* media and source types as above, else 400 (code ``unsupported_value``);
* base64 data: the RFC 4648 alphabet, padded, without whitespace, not empty, else 400.
  It is checked without decoding it; only its first 12 bytes are decoded, and they must
  be what the media type says (the PNG, JPEG, GIF or WebP signature; ``%PDF-``), else
  400. Measured with Claude Code 2.1.327: an image it cannot read reaches the model as a
  text note instead, and a document the API refuses would stay in the session's
  conversation and fail every later turn;
* URLs: ``https`` with a host, else 400.

Sizes are measured, not limited, here: each block comes with a ``MediaPart`` saying its
decoded size, which the pipeline checks against the settings
(``app.http._pipeline.check_media``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import urllib.parse
from typing import Any, Literal

from ._problems import RequestError

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
PDF = "application/pdf"
PLAIN_TEXT = "text/plain"
UNSUPPORTED = "unsupported_value"

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# What the first bytes of a file of each type are (PNG, JPEG/JFIF, GIF 87a/89a, WebP in
# RIFF, PDF), from those formats' specifications.
_SIGNATURES: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("image/png", re.compile(rb"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", re.compile(rb"\xff\xd8\xff")),
    ("image/gif", re.compile(rb"GIF8[79]a")),
    ("image/webp", re.compile(rb"RIFF....WEBP", re.DOTALL)),
    (PDF, re.compile(rb"%PDF-")),
)
_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP"}
MAX_URL_CHARS = 8192
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")

Block = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class MediaPart:
    """One image or document of a request, for the limits.

    Attributes:
        field: where it is in the request, in the API's words (``messages.1.content.0
            .source.data``, ``messages[1].content[0].image_url.url``).
        kind: ``image`` or ``document``.
        size: its decoded size in bytes (UTF-8 bytes for a text document; 0 for a URL).
        block: the canonical block itself (the very object in ``Message.media``, so
            the pipeline can tell which parts a prompt sends).
    """

    field: str
    kind: Literal["image", "document"]
    size: int
    block: Block = dataclasses.field(compare=False, repr=False, default_factory=dict)


def canonical_json(block: Block) -> bytes:
    """A media block as compact JSON with sorted keys (UTF-8): the same bytes for the
    same attachment, for hashing. Not a checkpoint."""
    return json.dumps(block, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decoded_size(data: object, field: str) -> int:
    """The number of bytes ``data`` decodes to, checked as strict base64 without
    decoding it (linear in its length, no copy of it). Not a checkpoint.

    Raises:
        RequestError: ``data`` is not a non-empty string of padded base64 (400).
    """
    if not isinstance(data, str) or not data:
        raise RequestError(f"{field}: base64 data is required", param=field)
    if len(data) % 4 or not _BASE64.fullmatch(data):
        raise RequestError(
            f"{field}: not valid base64 (RFC 4648 alphabet, padded, no whitespace)", param=field
        )
    padding = 2 if data.endswith("==") else 1 if data.endswith("=") else 0
    return len(data) // 4 * 3 - padding


def sniffed_type(data: str) -> str | None:
    """The media type the first bytes of base64 ``data`` (already checked by
    ``decoded_size``) show, among images and PDF; ``None`` if none. Not a checkpoint."""
    head = base64.b64decode(data[:16])
    return next((kind for kind, signature in _SIGNATURES if signature.match(head)), None)


def base64_image(
    media_type: object, data: object, *, type_field: str, data_field: str
) -> tuple[Block, int]:
    """An image block with a base64 source, checked (see the module docstring).

    Args:
        media_type: the declared media type.
        data: the base64 data.
        type_field, data_field: where ``media_type`` and ``data`` are, for errors.

    Returns:
        ``{"type": "image", "source": {"type": "base64", "media_type", "data"}}`` and
        its decoded size in bytes.

    Raises:
        RequestError: an unsupported media type, bad base64, or data that is not an
            image of that type (400).
    """
    if media_type not in IMAGE_MEDIA_TYPES:
        raise RequestError(
            f"{type_field}: unsupported image media type {media_type!r}; supported: "
            f"{', '.join(IMAGE_MEDIA_TYPES)}",
            param=type_field,
            code=UNSUPPORTED,
        )
    size = decoded_size(data, data_field)
    assert isinstance(data, str) and isinstance(media_type, str)
    found = sniffed_type(data)
    if found != media_type:
        what = (
            f"a {_NAMES[found]} image" if found in _NAMES else "not a PNG, JPEG, GIF or WebP image"
        )
        raise RequestError(f"{data_field}: the data is {what}, not {media_type}", param=data_field)
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "image", "source": source}, size


def base64_pdf(data: object, *, data_field: str) -> tuple[Block, int]:
    """A document block with a base64 PDF source (``%PDF-`` first), without extras, and
    its decoded size in bytes.

    Raises:
        RequestError: bad base64, or not a PDF (400).
    """
    size = decoded_size(data, data_field)
    assert isinstance(data, str)
    if sniffed_type(data) != PDF:
        raise RequestError(f"{data_field}: the data is not a PDF", param=data_field)
    source = {"type": "base64", "media_type": PDF, "data": data}
    return {"type": "document", "source": source}, size


def https_url(url: object, field: str) -> str:
    """``url`` if it is an ``https`` URL with a host (at most ``MAX_URL_CHARS``, without
    spaces or control characters).

    Raises:
        RequestError: anything else (400): ccactors fetches nothing, and Claude reads
            only public ``https`` URLs.
    """
    problem = None
    if not isinstance(url, str) or not url:
        problem = "a URL is required"
    elif len(url) > MAX_URL_CHARS:
        problem = f"the URL is longer than {MAX_URL_CHARS} characters"
    else:
        try:
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname
        except ValueError:
            parts, host = None, None
        if parts is None or parts.scheme.lower() != "https" or not host:
            problem = "only https URLs with a host are supported"
        elif _CONTROL_OR_SPACE.search(url):
            problem = "a URL may not hold spaces or control characters"
    if problem:
        raise RequestError(f"{field}: {problem}", param=field, code=UNSUPPORTED)
    assert isinstance(url, str)
    return url


def url_image(url: object, field: str) -> Block:
    """An image block with a URL source. Raises ``RequestError`` as ``https_url``."""
    return {"type": "image", "source": {"type": "url", "url": https_url(url, field)}}


# -- Anthropic content blocks -----------------------------------------------------------


def _source(block: Block, where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise RequestError(f"{where}.source: an object is required", param=f"{where}.source")
    return source


def _unsupported_source(kind: str, source: dict[str, Any], where: str) -> RequestError:
    supported = "base64, url" if kind == "image" else "base64 (PDF), text, url (PDF)"
    field = f"{where}.source.type"
    return RequestError(
        f"{field}: unsupported {kind} source type {source.get('type')!r}; supported: {supported}",
        param=field,
        code=UNSUPPORTED,
    )


def anthropic_image(block: Block, where: str) -> tuple[Block, MediaPart]:
    """An Anthropic ``image`` block of a request, checked and canonical.

    Args:
        block: the block as the client sent it.
        where: its path (``messages.2.content.1``).

    Raises:
        RequestError: see the module docstring.
    """
    source = _source(block, where)
    if source.get("type") == "url":
        field = f"{where}.source.url"
        image = url_image(source.get("url"), field)
        return image, MediaPart(field, "image", 0, image)
    if source.get("type") != "base64":
        raise _unsupported_source("image", source, where)
    field = f"{where}.source.data"
    image, size = base64_image(
        source.get("media_type"),
        source.get("data"),
        type_field=f"{where}.source.media_type",
        data_field=field,
    )
    return image, MediaPart(field, "image", size, image)


def anthropic_document(block: Block, where: str) -> tuple[Block, MediaPart]:
    """An Anthropic ``document`` block of a request, checked and canonical: its source
    (a base64 PDF, plain text, or a PDF URL), then ``title``, ``context`` and
    ``citations`` if given (other fields are dropped).

    Raises:
        RequestError: see the module docstring; also a ``title`` or ``context`` that is
            not a string, or ``citations`` that is not ``{"enabled": bool}`` (400).
    """
    source = _source(block, where)
    kind, media_type = source.get("type"), source.get("media_type")
    if kind == "base64" and media_type == PDF:
        field = f"{where}.source.data"
        document, size = base64_pdf(source.get("data"), data_field=field)
    elif kind == "text" and media_type == PLAIN_TEXT:
        field = f"{where}.source.data"
        text = source.get("data")
        if not isinstance(text, str) or not text:
            raise RequestError(f"{field}: the document's text is required", param=field)
        source = {"type": "text", "media_type": PLAIN_TEXT, "data": text}
        document = {"type": "document", "source": source}
        size = len(text.encode("utf-8", "surrogatepass"))
    elif kind == "url":
        field = f"{where}.source.url"
        url = https_url(source.get("url"), field)
        document = {"type": "document", "source": {"type": "url", "url": url}}
        size = 0
    elif kind in ("base64", "text"):
        field = f"{where}.source.media_type"
        expected = PDF if kind == "base64" else PLAIN_TEXT
        raise RequestError(
            f"{field}: unsupported document media type {media_type!r} for a {kind} source; "
            f"supported: {expected}",
            param=field,
            code=UNSUPPORTED,
        )
    else:
        raise _unsupported_source("document", source, where)
    document = {**document, **_document_extras(block, where)}
    return document, MediaPart(field, "document", size, document)


def _document_extras(block: Block, where: str) -> Block:
    extras: Block = {}
    for name in ("title", "context"):
        value = block.get(name)
        if value is not None and not isinstance(value, str):
            raise RequestError(f"{where}.{name}: a string is required", param=f"{where}.{name}")
        if value is not None:
            extras[name] = value
    citations = block.get("citations")
    if citations is not None:
        enabled = citations.get("enabled", False) if isinstance(citations, dict) else None
        if not isinstance(enabled, bool):
            field = f"{where}.citations"
            raise RequestError(f'{field}: {{"enabled": true|false}} is required', param=field)
        extras["citations"] = {"enabled": enabled}
    return extras
