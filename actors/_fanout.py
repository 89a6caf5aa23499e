"""Fan-out of a session's events to any number of listeners, none of which can slow it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from ._types import Lagged, PermissionRequest, SessionEvent

Notice = SessionEvent | Lagged | PermissionRequest


@dataclass(eq=False)
class _Listener:
    send: trio.MemorySendChannel[Notice]
    dropped: int = 0  # events dropped since the last Lagged notice was delivered


class FanOut:
    """Copies events to listeners through bounded buffers, never waiting.

    A listener whose buffer is full loses events: they are counted, and once its buffer
    has room again it first receives ``Lagged(dropped=n)``, then events resume. So a slow
    listener never slows the turn or the other listeners, and never grows a queue.
    """

    def __init__(self, buffer_size: int) -> None:
        self.buffer_size = buffer_size
        self.dropped_total = 0
        # A dict as an ordered set: an empty set is 216 bytes, an empty dict 64, and a
        # hibernated session keeps its fan-out.
        self._listeners: dict[_Listener, None] = {}

    def __len__(self) -> int:
        return len(self._listeners)

    @contextmanager
    def listen(self, replay: Iterable[Notice] = ()) -> Iterator[trio.MemoryReceiveChannel[Notice]]:
        """Yield a channel receiving ``replay`` and then every event published from now
        on. Not a checkpoint."""
        send, receive = trio.open_memory_channel[Notice](self.buffer_size)
        for notice in replay:
            send.send_nowait(notice)
        listener = _Listener(send)
        self._listeners[listener] = None
        try:
            with receive:
                yield receive
        finally:
            self._listeners.pop(listener, None)
            send.close()

    def publish(self, event: Notice) -> None:
        """Offer ``event`` to every listener. Not a checkpoint."""
        for listener in list(self._listeners):
            try:
                if listener.dropped:
                    listener.send.send_nowait(Lagged(listener.dropped))
                    listener.dropped = 0
                listener.send.send_nowait(event)
            except trio.WouldBlock:
                listener.dropped += 1
                self.dropped_total += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._listeners.pop(listener, None)

    def close(self) -> None:
        """End every listener's channel (the session is gone). Not a checkpoint."""
        for listener in self._listeners:
            listener.send.close()
        self._listeners.clear()
