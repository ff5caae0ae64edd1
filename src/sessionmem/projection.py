"""Projections: one user's logs folded into "latest per session" and each session's history.

`UserView` is the projection of `log/<user>/`: it owns its state (`rows.Rows`) and reads it here;
the functions of `fold` write it (how the files become rows), the checks of a file before a fold
trusts it are `filecheck`, and the big cold fold shared with a child process `childfold`.
Everything is derived from the log files alone and can be thrown away (docs/storage.md).
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import fold
from .codec import DecodeError, Event, event_from_record, id_hash, loads
from .errors import Stale
from .filecheck import PASSING, unreadable
from .fold import FULL_CHECK_SECONDS, PARALLEL_FOLD_BYTES
from .lru import ByteLRU
from .model import Problem
from .rows import DELETE, SNAPSHOT, FoldResult, History, Part, Rows, Summary, summarize

if TYPE_CHECKING:
    from .log import Appended

SUMMARY_BYTES = 16 << 20  # session-head summaries kept for filtered listings, per store

__all__ = [
    "FULL_CHECK_SECONDS",
    "PARALLEL_FOLD_BYTES",
    "SUMMARY_BYTES",
    "FoldResult",
    "Part",
    "Stale",
    "UserView",
]


class UserView:
    """The projection of `log/<user>/`. Thread-safe: every public method takes `state.lock`."""

    __slots__ = ("state", "summaries", "_days")  # (a test setting a state attribute fails)

    def __init__(self, folder: Path, user: str):
        self.state = Rows(folder, user)
        # Summaries of session heads, in a cache bounded in bytes that the store may share
        # between users (`attach_caches`).
        self.summaries = ByteLRU(SUMMARY_BYTES)
        # saves_per_day's last answer: ((generation, since), days)
        self._days: tuple[tuple[int, int], dict[int, int]] | None = None

    # --- folding: the state changes only through `fold` -------------------------------------

    def refresh(self, *, force: bool = False) -> bool:
        """Fold whatever changed on disk since the last call (`fold.refresh`)."""
        return fold.refresh(self.state, force=force)

    def reset(self) -> None:
        fold.reset(self.state)

    def invalidate(self, part_no: int | None) -> None:
        fold.invalidate(self.state, part_no)

    def note_append(self, a: Appended, ev: Event) -> int | None:
        return fold.note_append(self.state, a, ev)

    # --- reading -----------------------------------------------------------------------

    def history(self, session_id: str) -> History | None:
        """The merged history of a session, or None if it never existed here."""
        with self.state.lock:
            sidx = self.state.session_index.get(session_id)
            if sidx is None or sidx not in self.state.heads:
                return None
            hist = self.state.histories.get(sidx)
            if hist is None:
                hist = self._merge(sidx)
                self.state.histories[sidx] = hist
            return hist

    def _merge(self, sidx: int) -> History:
        refs: list[int] = []
        for part in self.state.by_no.values():
            rows = part.by_session.get(sidx)
            if rows:
                base = part.no << 32
                refs.extend(base | r for r in rows)
        keyed = sorted((self.state.key(r), r) for r in refs)
        merged = array("q")
        last: tuple[Any, ...] = ()
        start = 0
        for key, ref in keyed:
            if key == last:
                continue  # the same event twice (union merge, cherry-pick)
            last = key
            merged.append(ref)
            if self.state.kind(ref) == DELETE:
                start = len(merged)
        return History(merged, last, start)

    def latest_head(self) -> tuple[int, int] | None:
        """(sidx, ref) of the newest live snapshot over all sessions (kept up to date as rows
        are folded; worked out again after a file was dropped)."""
        with self.state.lock:
            if self.state.latest is None:
                best = None
                for sidx, (key, ref, kind) in self.state.heads.items():
                    if kind == SNAPSHOT and (best is None or key > best[0]):
                        best = (key, sidx, ref)
                if best is None:
                    return None
                self.state.latest = best
            return self.state.latest[1], self.state.latest[2]

    def live_heads(self) -> list[tuple[tuple[Any, ...], int, int]]:
        """(key, sidx, ref) of every session whose newest event is a snapshot, newest first."""
        with self.state.lock:
            heads = [(h[0], sidx, h[1]) for sidx, h in self.state.heads.items() if h[2] == SNAPSHOT]
        heads.sort(reverse=True)
        return heads

    def read(self, ref: int) -> Event:
        """Read the event at `ref` back from its file. Raises Stale if the file changed."""
        try:
            return event_from_record(self.read_records([ref])[0])
        except DecodeError:
            raise Stale(ref, ref >> 32) from None

    def read_records(self, refs: list[int]) -> list[dict[str, Any]]:
        """The raw records at `refs`, in order, read with one open and (mostly) one pread per
        file — for listings such as a session's whole history. Raises Stale like `read`."""
        with self.state.lock:
            wanted: dict[int, list[tuple[int, int, int, int]]] = {}
            for i, ref in enumerate(refs):
                part = self.state.by_no.get(ref >> 32)
                if part is None:
                    raise Stale(ref, ref >> 32)
                row = ref & 0xFFFF_FFFF
                wanted.setdefault(part.no, []).append(
                    (part.off[row], part.ln[row], i, part.idh[row])
                )
            files = {no: (self.state.by_no[no].path, self.state.by_no[no].ino) for no in wanted}
        out: list[dict[str, Any]] = [{}] * len(refs)
        for no, items in wanted.items():
            path, ino = files[no]
            items.sort()
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                if exc.errno in PASSING:
                    raise unreadable(path, exc) from exc
                raise Stale(no << 32, no) from None
            try:
                if os.fstat(fd).st_ino != ino:
                    raise Stale(no << 32, no)
                start = items[0][0]
                end = max(off + ln for off, ln, _, _ in items)
                useful = sum(ln for _, ln, _, _ in items)
                if end - start <= 4 * useful + 65536:
                    block = os.pread(fd, end - start, start)
                    chunks = [block[off - start : off - start + ln] for off, ln, _, _ in items]
                else:
                    chunks = [os.pread(fd, ln, off) for off, ln, _, _ in items]
            finally:
                os.close(fd)
            for (_, _, i, idh), raw in zip(items, chunks, strict=True):
                try:
                    record = loads(raw)
                    ok = id_hash(record["id"]) == idh
                except (ValueError, KeyError, TypeError):
                    ok = False
                if not ok:
                    raise Stale(refs[i], no)
                out[i] = record
        return out

    def summary(self, sidx: int, ref: int) -> Summary:
        """The head's summary (read from the log, kept in the bounded cache)."""
        key = (self.state.user, ref)
        cached: Summary | None = self.summaries.get(key)
        if cached is not None:
            return cached
        found = summarize(ref, self.read(ref))
        self.summaries.put(key, found, found.size)
        return found

    def find_id(self, event_id: str) -> Iterable[int]:
        """Refs of rows whose id hash matches `event_id` (confirm by reading)."""
        target = id_hash(event_id)
        with self.state.lock:
            found = []
            for part in self.state.by_no.values():
                start = 0
                while True:
                    try:
                        row = part.idh.index(target, start)
                    except ValueError:
                        break
                    found.append(part.no << 32 | row)
                    start = row + 1
            return found

    def problems(self) -> list[Problem]:
        with self.state.lock:
            return [p for part in self.state.parts.values() for p in part.problems]

    def saves_per_day(self, since_ms: int) -> dict[int, int]:
        """Snapshots stored per UTC day (days since 1970) from `since_ms` on, every session's
        (a deleted one's too: they were saved; a forgotten one's are gone)."""
        day = 86_400_000
        with self.state.lock:
            cached = self._days
            if cached is not None and cached[0] == (self.state.generation, since_ms):
                return dict(cached[1])
            out: dict[int, int] = {}
            for part in self.state.by_no.values():
                for ts, kind in zip(part.ts, part.kind, strict=True):
                    if ts >= since_ms and kind == SNAPSHOT:
                        out[ts // day] = out.get(ts // day, 0) + 1
            self._days = ((self.state.generation, since_ms), out)
            return dict(out)

    def event_count(self) -> int:
        with self.state.lock:
            return sum(len(p.ts) for p in self.state.by_no.values())

    def other_writers_max_ts(self, writer: str) -> int:
        """The newest ts of any other writer's event in these files (0 if none); worked out
        from the files folded now, so a file dropped or reverted no longer counts."""
        with self.state.lock:
            return max(
                (t for p in self.state.by_no.values() for w, t in p.max_ts.items() if w != writer),
                default=0,
            )
