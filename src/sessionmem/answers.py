"""Answers kept ready to send: each session's newest snapshot with its JSON (GET latest and by id
answer without reading or serializing), and the history entries of long-listed sessions. Both
are bounded, whatever the snapshots hold, and both only ever describe what the fold says now."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from .codec import Event
from .errors import NotFound, Stale
from .lru import ByteLRU
from .model import HistoryEntry, Snapshot, counts
from .projection import UserView
from .rows import History

ANSWER_BYTES = 32 << 20  # newest answers kept ready to send, over all users and sessions
SMALL_ANSWER = 16 << 10  # an answer up to this size keeps its parsed snapshot too
HISTORY_CACHE_ENTRIES = 20_000  # history entries kept ready to list, over all sessions (~10 MB)


class Answers:
    def __init__(self) -> None:
        self._newest = ByteLRU(ANSWER_BYTES)
        self._lock = threading.Lock()
        # (user, session index) -> (its History, live start, entries of versions 1..n)
        self._entries: OrderedDict[tuple[str, int], tuple[History, int, list[HistoryEntry]]]
        self._entries = OrderedDict()
        self._entry_count = 0

    def render(
        self, view: UserView, session_id: str, ref: int, ev: Event | None = None, size: int = 0
    ) -> Snapshot:
        """The snapshot at `ref` (with its JSON), kept for the newest snapshot of each session.
        `ev` is the event at `ref` and `size` its line's length when the caller has them (a
        write just made it): then a small snapshot's JSON is made only when asked for."""
        hist = view.history(session_id)
        if hist is None:
            raise Stale(ref)
        total = len(hist.refs) - hist.start
        newest = total > 0 and hist.refs[-1] == ref
        key = (view.state.user, view.state.session_index[session_id])
        if newest:
            cached = self._newest.get(key)
            if cached is not None and cached[0] == ref and cached[1] == total:
                return cached[2] or Snapshot.from_json(cached[3])
        version = version_of(view, hist, ref)
        if version == 0:
            raise NotFound(f"That snapshot is no longer in session {session_id!r} (deleted).")
        ref = hist.refs[hist.start + version - 1]
        snap = snapshot_of(ev if ev is not None else view.read(ref), version)
        if newest and 0 < size <= SMALL_ANSWER // 2:  # its JSON is about the line's size
            self._newest.put(key, (ref, total, snap, None), size * 4)
            return snap
        raw = snap.json()
        if newest:
            # A small answer keeps its parsed snapshot too (the library's reads); a big one only
            # its JSON, a fraction of the parsed form.
            # (orjson's result keeps its growth buffer — up to 4x its length — so a big one is
            # kept as an exact copy.)
            small = len(raw) <= SMALL_ANSWER
            kept = raw if small else bytes(memoryview(raw))
            self._newest.put(
                key, (ref, total, snap if small else None, kept), len(raw) * (4 if small else 1)
            )
        return snap

    def history_entries(
        self, view: UserView, session_id: str, hist: History, start: int
    ) -> list[HistoryEntry]:
        """Every live version's entry, oldest first. Built once per session and kept (a History
        only ever grows at its end, so a new version reads just its own line): listing a long
        history costs a slice. The entries are shared: treat them as read-only."""
        key = (view.state.user, view.state.session_index[session_id])
        total = len(hist.refs) - start
        cached = self._entries.get(key)
        have: list[HistoryEntry] = []
        if cached is not None and cached[0] is hist and cached[1] == start:
            have = cached[2]
            if len(have) == total:
                with self._lock:
                    if key in self._entries:
                        self._entries.move_to_end(key)
                return have
        entries = have + entries_of(view, hist, start, range(len(have) + 1, total + 1))
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._entry_count -= len(old[2])
            self._entries[key] = (hist, start, entries)
            self._entry_count += len(entries)
            while self._entry_count > HISTORY_CACHE_ENTRIES:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._entry_count -= len(dropped)
        return entries


def version_of(view: UserView, hist: History, ref: int) -> int:
    """The live version of the event at `ref` in `hist` (the row itself, or another copy of
    the same event — a union merge's duplicate), or 0 if it is not live."""
    refs, start = hist.refs, hist.start
    for i in range(len(refs) - 1, start - 1, -1):  # mostly found among the last few
        if refs[i] == ref:
            return i - start + 1
    target = view.state.idh(ref)
    for i in range(len(refs) - 1, start - 1, -1):
        if view.state.idh(refs[i]) == target:
            return i - start + 1
    return 0


def entries_of(view: UserView, hist: Any, start: int, versions: range) -> list[HistoryEntry]:
    """History entries of `versions` (numbered from the live `start`), read from the logs."""
    records = view.read_records([hist.refs[start + n - 1] for n in versions])
    return [
        HistoryEntry(n, r["id"], r["data"].get("event", ""), r["ts"], counts(r["data"]))
        for n, r in zip(versions, records, strict=True)
    ]


def snapshot_of(ev: Event, version: int) -> Snapshot:
    return Snapshot(
        session_id=ev.session_id,
        version=version,
        snapshot_id=ev.id,
        event=ev.data.get("event", ""),
        created_at=ev.ts,
        session_data=ev.data,
    )
