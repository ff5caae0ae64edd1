"""Retention (docs/decisions.md, "Forgetting"): a `[retention]` section in `.memory/config.toml`
that `sessionmem serve` applies once a day, by `prune`:

```toml
[retention]
keep_versions = 50      # each session's newest 50 versions
older_than = "180d"     # and none older than 180 days (each session's newest is always kept)
```

Once a day across every worker and restart: the last run's time is kept in
`.local/retention.json`, and the worker that takes `.local/locks/retention.lock` runs it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .config import read_config
from .errors import FieldError, InvalidInput
from .rules import check_duration, check_version

if TYPE_CHECKING:
    from .store import Store

DAY_SECONDS = 86_400
WAKE_SECONDS = 600.0  # how often the thread looks whether a day has passed


class Retention(NamedTuple):
    keep_versions: int | None
    older_than_ms: int | None


def read(root: Path | str) -> Retention | None:
    """The `[retention]` section, checked; None when there is none."""
    section = read_config(root).get("retention")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise InvalidInput(FieldError("retention", "must be a table: [retention]"))
    unknown = sorted(set(section) - {"keep_versions", "older_than"})
    if unknown:
        raise InvalidInput(
            FieldError(f"retention.{unknown[0]}", "is not a setting (keep_versions, older_than)")
        )
    keep = section.get("keep_versions")
    age = section.get("older_than")
    if keep is None and age is None:
        raise InvalidInput(FieldError("retention", "needs keep_versions, older_than or both"))
    return Retention(
        check_version(keep, "retention.keep_versions") if keep is not None else None,
        check_duration(age, "retention.older_than") if age is not None else None,
    )


def run_if_due(store: Store, rules: Retention, *, now: float | None = None) -> dict[str, Any]:
    """Prune every user by `rules` unless it ran less than a day ago (here or in another
    worker). Returns what it did: {"ran": bool, "events": N}."""
    now = time.time() if now is None else now
    local = store.layout.local
    stamp = local / "retention.json"
    store.layout.locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(store.layout.locks / "retention.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"ran": False, "events": 0}  # another worker is at it
        try:
            last = float(json.loads(stamp.read_text())["at"])
        except (OSError, ValueError, KeyError, TypeError):
            last = 0.0
        if now - last < DAY_SECONDS:
            return {"ran": False, "events": 0}
        events = sum(
            store.prune(
                u, keep_versions=rules.keep_versions, older_than_ms=rules.older_than_ms
            ).events
            for u in store.users()
        )
        tmp = stamp.with_name(".retention.json.tmp")
        tmp.write_text(json.dumps({"at": now, "events": events}))
        os.replace(tmp, stamp)
        return {"ran": True, "events": events}
    finally:
        os.close(fd)


class RetentionThread:
    """Applies `[retention]` once a day while a server runs (a daemon thread)."""

    def __init__(self, store: Store, rules: Retention):
        self.store, self.rules = store, rules
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sessionmem-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                run_if_due(self.store, self.rules)
            except Exception:  # noqa: BLE001 - logged by the server's error log, tried again
                logging.getLogger("sessionmem").exception("retention failed")
            self._stop.wait(WAKE_SECONDS)
