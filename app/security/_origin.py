"""Which requests a web page may make: the rules against browser-borne requests.

ccactors usually listens on loopback without API keys, and any page the user visits can
make the browser send requests there. Three attacks, and what stops each:

* **Cross-site requests.** ``fetch(url, {mode: "no-cors", body})``, a form or
  ``sendBeacon`` sends a "simple" request without asking the server first (no CORS
  preflight). The page cannot read the answer, but the request runs: a turn, an
  interrupt. Browsers send ``Origin`` with every such POST and ``Sec-Fetch-Site`` with
  every request, so both are checked; and a request body must be declared
  ``Content-Type: application/json``, a type no page can send cross-site without a
  preflight (which is refused unless the origin is allowed).
* **DNS rebinding.** A page at ``http://evil.example:8765`` whose name is re-pointed at
  127.0.0.1 is same-origin with ccactors for the browser: it can read every answer
  (``GET /v1/sessions``, transcripts). The browser still names ``evil.example`` in the
  ``Host`` header, so only names of this server are accepted.
* **Cross-site WebSocket hijacking.** WebSockets are not subject to CORS at all; the
  handshake carries ``Origin``, and is refused before it is accepted.

``RequestPolicy`` holds these rules; ``app.http._browser.BrowserGuard`` applies them to every
HTTP request and WebSocket handshake, in this order, before the application sees it (the
first failing rule answers):

1. ``Host`` must name this server (else 421 Misdirected Request): ``localhost``,
   ``127.0.0.1``, ``[::1]``, the bound host, any IP address literal (a browser that
   sends one reached that address itself, which rebinding cannot cause), and the names
   in ``allowed_hosts``; any port. ``"*"`` accepts any name. A request without ``Host``
   (HTTP/1.0) is refused the same way.
2. ``Origin``, if present, must be in ``allowed_origins`` (else 403). ``null`` never is.
   One exception: the server's own origin (``http(s)://`` and the ``Host`` just
   accepted) with ``Sec-Fetch-Site: same-origin``, which browsers send (with
   ``Origin``) on the POST and DELETE of ccactors' own dashboard page. No other page can
   send it: a browser names the page's own site in ``Sec-Fetch-Site``, and a rebound
   name fails rule 1 first.
3. ``Sec-Fetch-Site: cross-site`` is refused (403) unless ``Origin`` is allowed. A
   ``same-site`` request from another origin (another port of localhost) is covered by
   rule 2, as browsers send ``Origin`` with it wherever it matters.
4. A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
   from an allowed origin is answered here (204). Actual responses to an allowed origin
   carry ``Access-Control-Allow-Origin`` and ``Vary: Origin``. With no
   ``allowed_origins``, CORS is off: no response says any origin may read it.
5. A POST, PUT, PATCH or DELETE with a ``Content-Type`` other than ``application/json``
   (parameters such as ``charset`` allowed), or with a body but no ``Content-Type``, is
   refused (415). A body-less request without ``Content-Type`` (``POST .../interrupt``
   from httpx or curl) passes: a browser sends one cross-site only with ``Origin`` and
   ``Sec-Fetch-Site``, which rules 2 and 3 refuse. Routes that read JSON check the
   content type again (``app.http._requests.json_object``).

Refusals are error JSON in the API's own format (OpenAI's on ``/v1/chat/completions``
and ``/v1/models``, Anthropic's elsewhere). A refused WebSocket handshake gets the same
403 or 421 as an HTTP response, never an accepted connection.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..wire._json import is_json_media_type

if TYPE_CHECKING:
    from .._settings import Settings

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ORIGIN = re.compile(r"(https?)://([^/?#@\s]+)")


class Refusal(Exception):
    """A request refused before the application saw it.

    Attributes:
        status: the HTTP status (403, 415 or 421).
        code: a short machine-readable reason (OpenAI's ``code`` field).
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def host_name(host: str) -> str:
    """The name in a ``Host`` header or setting: lowercase, without port or trailing
    dot; an IPv6 address in brackets (``[::1]``). Not a checkpoint."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    if host.count(":") > 1:  # a bare IPv6 address, as in settings.host
        return f"[{host}]"
    return host.partition(":")[0].rstrip(".")


def origin_of(value: str) -> str:
    """An origin setting in the form browsers send: ``scheme://host[:port]``, lowercase.

    Raises:
        ValueError: not an http(s) origin (``*``, ``null`` and paths are not origins).
    """
    normalized = value.strip().lower().rstrip("/")
    if not _ORIGIN.fullmatch(normalized):
        raise ValueError(
            f"{value!r} is not an origin: write scheme://host[:port], "
            "e.g. https://app.example or http://localhost:3000"
        )
    return normalized


def _same_origin(origin: str, host: str, fetch_site: str) -> bool:
    """Whether ``origin`` is this server's own as the browser reached it (its ``Host``),
    and the browser says so (``Sec-Fetch-Site: same-origin``). Not a checkpoint."""
    match = _ORIGIN.fullmatch(origin.strip().lower())
    return (
        fetch_site == "same-origin" and match is not None and match.group(2) == host.strip().lower()
    )


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class RequestPolicy:
    """The hosts and origins a server accepts, and the checks of the module docstring.

    Args:
        host: the host the server is bound to (accepted as a ``Host`` name).
        allowed_hosts: more ``Host`` names (any port); ``"*"`` accepts any.
        allowed_origins: origins whose pages may call the server (CORS).

    Raises:
        ValueError: an entry of ``allowed_origins`` is not an origin.
    """

    def __init__(
        self, *, host: str, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]
    ) -> None:
        hosts = list(allowed_hosts)
        self.any_host = "*" in hosts
        self.hosts = LOOPBACK_NAMES | {host_name(h) for h in [host, *hosts] if h != "*"}
        self.origins = frozenset(origin_of(o) for o in allowed_origins)

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestPolicy:
        """The policy of ``settings.host``, ``allowed_hosts`` and ``allowed_origins``."""
        return cls(
            host=settings.host,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.allowed_origins,
        )

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether ``origin`` (an ``Origin`` header) is allowed. Not a checkpoint."""
        return origin is not None and origin.lower() in self.origins

    def check(self, scope_type: str, method: str, headers: dict[str, list[str]]) -> None:
        """Apply rules 1, 2, 3 and 5 of the module docstring. Not a checkpoint.

        Args:
            scope_type: ``"http"`` or ``"websocket"`` (rule 5 is for HTTP only).
            method: the HTTP method.
            headers: lowercase header names to their values.

        Raises:
            Refusal: a rule refused the request.
        """
        hosts = headers.get("host", [])
        if len(hosts) != 1 or not hosts[0].strip():
            raise Refusal(421, "host_not_allowed", "the request must have one Host header")
        if not self._host_allowed(hosts[0]):
            raise Refusal(
                421,
                "host_not_allowed",
                f"{hosts[0]!r} is not a name of this server; if a proxy forwards it, "
                "add it to CCACTORS_ALLOWED_HOSTS",
            )
        origins = headers.get("origin", [])
        site = headers.get("sec-fetch-site", [""])[0].strip().lower()
        if len(origins) > 1 or (
            origins
            and not self.origin_allowed(origins[0])
            and not _same_origin(origins[0], hosts[0], site)
        ):
            raise Refusal(
                403,
                "origin_not_allowed",
                f"requests from web pages at {', '.join(origins)} are refused; "
                "add the origin to CCACTORS_ALLOWED_ORIGINS to allow it",
            )
        if site == "cross-site" and not origins:
            raise Refusal(
                403, "origin_not_allowed", "requests from other sites' web pages are refused"
            )
        if scope_type == "http" and method in UNSAFE_METHODS:
            content_type = headers.get("content-type", [None])[0]
            has_body = "transfer-encoding" in headers or any(
                length.strip() != "0" for length in headers.get("content-length", [])
            )
            if content_type is None and has_body:
                raise Refusal(
                    415,
                    "unsupported_media_type",
                    "a request body must be sent as Content-Type: application/json",
                )
            if content_type is not None and not is_json_media_type(content_type):
                raise Refusal(
                    415,
                    "unsupported_media_type",
                    f"Content-Type {content_type!r} is not supported: send application/json",
                )

    def _host_allowed(self, host: str) -> bool:
        if self.any_host:
            return True
        name = host_name(host)
        return name in self.hosts or _is_ip_literal(name)
