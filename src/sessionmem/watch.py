"""Following the log folder while serving (docs/storage.md, "Reading").

Reads are correct without this — every read first stats the user's log files and folds what is
new — but a watcher folds appends from other processes (other workers, the CLI, hooks) and git's
file replacements as they happen, so the read that follows finds the work done.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (the store makes its follower: `Store.follower`)
    from .store import Store

log = logging.getLogger("sessionmem.watch")


class Follower:
    def __init__(self, store: Store, *, debounce_ms: int = 20):
        self.store = store
        self.debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()  # set once the watcher is armed
        self.folds = 0  # how many change batches were folded; tests read it

    def start(self) -> None:
        self.store.layout.log.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="sessionmem-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        # lazy: watchfiles costs 17 ms at start-up
        from watchfiles import watch

        log_dir = self.store.layout.log
        # Fold every user once at start (or load the cache), so a big log's first fold does
        # not fall on the first request.
        for user in self.store.users():
            with contextlib.suppress(Exception):
                self.store.view(user)
        try:
            for changes in watch(
                log_dir,
                # Folders too: files made in a new folder before its watch is set are only seen
                # through the folder's own creation event.
                watch_filter=None,
                debounce=self.debounce_ms,
                step=10,
                stop_event=self._stop,
                raise_interrupt=False,
                yield_on_timeout=True,  # an empty batch now and then: the watcher is armed
                rust_timeout=200,
            ):
                self.ready.set()
                users = {_user_of(Path(p), log_dir) for _, p in changes}
                for user in sorted(u for u in users if u):
                    with contextlib.suppress(Exception):  # a read will fold it instead
                        self.store.view(user, force=True)  # force: edits made in place too
                    self.store.changes.changed(user)  # the web page's live updates
                if users:
                    self.folds += 1
        except Exception:  # the watcher is an optimisation: never take the server down
            log.exception("the log watcher stopped; reads still fold changes themselves")


def _user_of(path: Path, log_dir: Path) -> str | None:
    try:
        rel = path.relative_to(log_dir)
    except ValueError:
        return None
    return rel.parts[0] if rel.parts else None
