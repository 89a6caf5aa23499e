"""The ASGI vocabulary the middleware here is written in (the ASGI 3.0 specification,
https://asgi.readthedocs.io/en/latest/specs/main.html): an application is called with
the connection's scope and two callables, one receiving the client's messages and one
sending the server's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
