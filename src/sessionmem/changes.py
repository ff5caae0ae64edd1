"""Who wants to hear that a user's memory changed — the web page's live updates. An engine's
follower says so (the file watcher when it folds another process's append; PostgreSQL's
LISTEN when another replica writes), and so does the engine's own write path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Listener = Callable[[str | None], None]  # the user whose memory changed; None: anyone's


class Changes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on each change (from any thread) until the returned function is
        called."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def changed(self, user: str | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(user)


# --- live streams (the web page's server-sent events) -------------------------------------------

_streams: set[Any] = set()  # the asyncio.Event of each open stream: set means "end now"


def open_stream(stop: Any) -> Callable[[], None]:
    """Register a live stream's stop event; the returned function unregisters it."""
    _streams.add(stop)
    return lambda: _streams.discard(stop)


def stop_streams() -> None:
    """End every live stream (the server is stopping: a stream would otherwise hold its
    connection open, and a graceful stop would wait for it forever). Called on the loop."""
    for stop in list(_streams):
        stop.set()
