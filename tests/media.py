"""Tiny valid images and documents for tests, made here (nothing downloaded), and the
request parts that carry them."""

from __future__ import annotations

import base64
import struct
import zlib


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid red RGB PNG of ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + b"\xff\x00\x00" * width) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# A one-pixel GIF89a.
GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")


def pdf(size: int | None = None) -> bytes:
    """A minimal valid one-page PDF; of exactly ``size`` bytes if given (a comment line
    before its end makes up the difference)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n" % (len(objects) + 1, xref)
    end = b"%%EOF\n"
    if size is not None:
        room = size - len(out) - len(end)
        assert room >= 2, f"a PDF cannot be smaller than {len(out) + len(end) + 2} bytes"
        out += b"%" + b"x" * (room - 2) + b"\n"
    return out + end


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_block(data: bytes, media_type: str = "image/png") -> dict:
    """An Anthropic base64 image block."""
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": b64(data)},
    }


def pdf_block(data: bytes) -> dict:
    """An Anthropic base64 PDF document block."""
    source = {"type": "base64", "media_type": "application/pdf", "data": b64(data)}
    return {"type": "document", "source": source}


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{b64(data)}"


PNG = png()
PDF = pdf()
PNG_BLOCK = image_block(PNG)
PDF_BLOCK = pdf_block(PDF)


def anthropic_body(*messages: dict, **fields) -> dict:
    return {"model": "m", "max_tokens": 10, "messages": list(messages), **fields}


def openai_body(*messages: dict, **fields) -> dict:
    return {"model": "m", "messages": list(messages), **fields}


def user(*content) -> dict:
    return {"role": "user", "content": list(content)}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def image_url(url: str) -> dict:
    """An OpenAI ``image_url`` part."""
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
