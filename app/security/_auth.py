"""API keys and principals.

A caller presents a key as ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` (the
headers Anthropic's and OpenAI's clients send). Keys are known only by their SHA-256
(from ``CCACTORS_API_KEYS``, hashed at start-up, or a file of hex hashes) and compared in
constant time. The *principal* of a request is a digest of its key: sessions are scoped
to it, and it is safe to log. With no keys configured, auth is off and the principal is
the empty string.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

PRINCIPAL_BYTES = 8  # 16 hex digits: tells keys apart in logs without revealing them


class AuthError(Exception):
    """The request has no valid API key (HTTP 401 in the API's own error format)."""


class KeyFileError(ValueError):
    """The key-hash file is unreadable or has a line that is not a SHA-256 hex digest."""


def hash_key(key: str) -> bytes:
    """The SHA-256 of an API key. Not a checkpoint."""
    return hashlib.sha256(key.encode()).digest()


def load_key_hashes(keys: Iterable[str], hash_file: Path | None) -> list[bytes]:
    """Every accepted key, as SHA-256 digests: the given keys hashed, plus the file's
    lines (hex digests; blank lines and ``#`` comments skipped).

    Raises:
        KeyFileError: the file cannot be read or has a malformed line.
    """
    hashes = [hash_key(key) for key in keys if key]
    if hash_file is None:
        return hashes
    try:
        lines = hash_file.read_text().splitlines()
    except OSError as exc:
        raise KeyFileError(f"cannot read the API key hash file {hash_file}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            digest = bytes.fromhex(line)
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise KeyFileError(f"{hash_file}:{number}: not a SHA-256 hex digest")
        hashes.append(digest)
    return hashes


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents (``x-api-key``, else a Bearer token), or None."""
    if key := headers.get("x-api-key"):
        return key
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def principal_for(headers: Mapping[str, str], key_hashes: list[bytes]) -> str:
    """The principal of a request: ``""`` when auth is off, else its key's short digest.

    Compares the presented key's hash with every known hash in constant time (no early
    exit), so timing reveals neither which key nor how much of it matched.

    Raises:
        AuthError: auth is on and the request has no known key.
    """
    if not key_hashes:
        return ""
    key = presented_key(headers)
    if key is None:
        raise AuthError("an API key is required (x-api-key or Authorization: Bearer)")
    digest = hash_key(key)
    matched = False
    for known in key_hashes:
        matched |= hmac.compare_digest(digest, known)
    if not matched:
        raise AuthError("invalid API key")
    # One string per key, not one per request: principals key long-lived entries
    # (sessions, their lineage marks), which would otherwise each keep a copy.
    return sys.intern(digest[:PRINCIPAL_BYTES].hex())


def is_admin(headers: Mapping[str, str], admin_hashes: list[bytes]) -> bool:
    """Whether the request presents one of the operator keys (compared in constant time,
    as in ``principal_for``). Not a checkpoint."""
    key = presented_key(headers)
    if key is None:
        return False
    digest = hash_key(key)
    matched = False
    for known in admin_hashes:
        matched |= hmac.compare_digest(digest, known)
    return matched


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
