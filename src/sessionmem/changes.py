"""Who wants to hear that a user's memory changed — the web page's live updates. An engine's
follower says so (the file watcher when it folds another process's append; PostgreSQL's
LISTEN when another replica writes), and so does the engine's own write path."""

from __future__ import annotations

import threading
from collections.abc import Callable

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
