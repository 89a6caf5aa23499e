"""Limits on tenants and slow clients: per-key caps on long-lived connections
(WebSockets, ``/events`` listeners), and closing connections whose body was cut off."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from actors import PrincipalLimitError

from ._asgi import ASGIApp, Message, Receive, Scope, Send

# Retry-After for a key at its cap: long-lived connections rarely end sooner.
CAP_RETRY_AFTER_S = 5


class PerKeyCap:
    """At most ``limit`` open things (of one kind) per principal.

    Args:
        limit: how many one principal may hold at once (``""`` counts as one principal:
            with auth off, every caller shares it).
        what: the things counted, plural, for the refusal message (e.g. "WebSockets").
    """

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self._held: collections.Counter[str] = collections.Counter()

    def held(self, principal: str) -> int:
        """How many ``principal`` holds now. Not a checkpoint."""
        return self._held[principal]

    @contextmanager
    def hold(self, principal: str) -> Iterator[None]:
        """Count one more for ``principal`` for the duration of the block.

        Raises:
            PrincipalLimitError: ``principal`` already holds ``limit`` (HTTP 429 with
                Retry-After).

        Not a checkpoint: taken and given back synchronously, so leaving the block in
        any way (cancellation included) gives it back at once.
        """
        if self._held[principal] >= self.limit:
            raise PrincipalLimitError(
                f"this key already has {self.limit} open {self.what} (at most "
                f"{self.limit}); close one first",
                retry_after_s=CAP_RETRY_AFTER_S,
            )
        self._held[principal] += 1
        try:
            yield
        finally:
            self._held[principal] -= 1
            if not self._held[principal]:
                del self._held[principal]


# Seconds the shielded last send may take: a client that stops reading cannot hold it.
LAST_SEND_TIMEOUT_S = 10.0


def shield_last_send(app: ASGIApp) -> ASGIApp:
    """Wrap an ASGI app so the last message of each HTTP response is sent shielded.

    Why: when a response ends before its request body did (a 408 for a trickled body,
    a 413), hypercorn closes the connection from inside that last ``send``, after
    telling the app the client is gone; quart-trio then cancels the request's task
    group, which cancels the close halfway, and the connection stays open for as long
    as the client keeps it (measured with hypercorn 0.18, quart-trio 0.12). Shielded,
    the close completes. hypercorn already shields its socket writes; this shield is
    bounded anyway, by ``LAST_SEND_TIMEOUT_S``.
    """

    async def shielded(
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        async def send_last_shielded(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                with trio.move_on_after(LAST_SEND_TIMEOUT_S, shield=True):
                    await send(message)
            else:
                await send(message)

        await app(scope, receive, send_last_shielded if scope["type"] == "http" else send)

    return shielded
