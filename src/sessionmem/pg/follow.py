"""A replica hears the others (docs/decisions.md, "PostgreSQL"): LISTEN on a connection of its
own, woken by the NOTIFY each write transaction sends at its commit (`pg.write.insert_jobs`: the
user's name) and each key revocation (`pg.keys.CHANNEL`).

Notifications are never the only way data arrives: every read asks the database (the hot reads in
batches), so a missed one only delays what listens — the web page's live updates — and a key
revoked elsewhere is seen within `keys.RECHECK_SECONDS` anyway. After a lost connection the
follower connects again and tells its listeners that anything may have changed (`None`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from ..errors import first_line
from .keys import CHANNEL as KEYS_CHANNEL

CHANNEL = "sessionmem"  # a write's notification: the user's name
RECONNECT_SECONDS = 1.0

log = logging.getLogger("sessionmem")


class Follower:
    """LISTENs for other replicas' writes; `on_change(user)` for each (None: anything)."""

    def __init__(
        self, url: str, on_change: Callable[[str | None], None], on_keys: Callable[[], None]
    ):
        self._url = url
        self._on_change = on_change
        self._on_keys = on_keys
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while a LISTEN connection is up (tests wait)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sessionmem-listen",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        quiet = False  # a database that stays away is logged once, not every second
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {KEYS_CHANNEL}")
                    self.listening.set()
                    if quiet:
                        log.warning("Listening to the database again.")
                    quiet = False
                    self._on_keys()
                    self._on_change(None)  # what was missed while away
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.channel == KEYS_CHANNEL:
                                self._on_keys()
                            else:
                                self._on_change(note.payload or None)
            except psycopg.Error as exc:
                self.listening.clear()
                if not quiet:
                    log.warning(
                        "Not hearing other replicas (%s); reads are still fresh.", first_line(exc)
                    )
                    quiet = True
                self._stop.wait(RECONNECT_SECONDS)
        self.listening.clear()
