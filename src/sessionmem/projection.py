"""Projections: one user's logs folded into "latest per session" and each session's history.

`UserView` is the projection of `log/<user>/`: its state and the reads of it are here; how the
files become rows is `fold.Folding`, the rows themselves `rows`, the checks of a file before a
fold trusts it `filecheck`, and the big cold fold shared with a child process `childfold`.
Everything is derived from the log files alone and can be thrown away (docs/storage.md).
"""

from __future__ import annotations

import os
import threading
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .codec import DecodeError, Event, event_from_record, id_hash, loads
from .errors import Stale
from .filecheck import PASSING, unreadable
from .fold import FULL_CHECK_SECONDS, PARALLEL_FOLD_BYTES, Folding
from .lru import ByteLRU
from .model import Problem
from .rows import COLUMNS, DELETE, SNAPSHOT, FoldResult, Head, History, Part, Summary, summarize

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


class UserView(Folding):
    """The projection of `log/<user>/`. Thread-safe: every public method takes `lock`."""

    @staticmethod
    def fold_range(folder: str, user: str, name: str, start: int, end: int) -> dict[str, Any]:
        """The child's side of `childfold.fold_in_halves`, called through the view's class (so
        the child-fold module never imports this one)."""
        return fold_range(folder, user, name, start, end)

    def __init__(self, folder: Path, user: str):
        self.folder = folder
        self.user = user
        self.lock = threading.RLock()
        self.parts: dict[str, Part] = {}
        self.by_no: dict[int, Part] = {}
        self._next_no = 1
        self.session_names: list[str] = []
        self.session_index: dict[str, int] = {}
        self.writer_names: list[str] = []
        self.writer_index: dict[str, int] = {}
        self.heads: dict[int, Head] = {}
        self.histories: dict[int, History] = {}
        # Summaries of session heads, in a cache bounded in bytes that the store may share
        # between users (`attach_caches`).
        self.summaries = ByteLRU(SUMMARY_BYTES)
        self.idem: dict[str, int] = {}
        self.generation = 0  # bumped whenever anything changed; caches key on it
        self._stamp: tuple[int, int] | None = None  # (inode, mtime_ns) of the folder when read
        self._full_at = 0.0  # when every file was last looked at
        self._seconds: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> ms, while folding
        self.loaded_rows = 0  # rows that came from the projection cache
        self.saved_rows = 0  # rows when the cache was last written or read
        self.saved_generation = 0  # `generation` then
        self.rebuilt = False  # a file was dropped since: the cache describes files gone
        # (key, sidx, ref) of the newest live snapshot; None means "work it out again".
        self._latest: tuple[tuple[Any, ...], int, int] | None = None

    # --- reading -----------------------------------------------------------------------

    def key(self, ref: int) -> tuple[int, str, int, int]:
        part = self.by_no[ref >> 32]
        row = ref & 0xFFFF_FFFF
        return (part.ts[row], self.writer_names[part.widx[row]], part.seq[row], part.idh[row])

    def kind(self, ref: int) -> int:
        return self.by_no[ref >> 32].kind[ref & 0xFFFF_FFFF]

    def idh(self, ref: int) -> int:
        return self.by_no[ref >> 32].idh[ref & 0xFFFF_FFFF]

    def history(self, session_id: str) -> History | None:
        """The merged history of a session, or None if it never existed here."""
        with self.lock:
            sidx = self.session_index.get(session_id)
            if sidx is None or sidx not in self.heads:
                return None
            hist = self.histories.get(sidx)
            if hist is None:
                hist = self._merge(sidx)
                self.histories[sidx] = hist
            return hist

    def _merge(self, sidx: int) -> History:
        refs: list[int] = []
        for part in self.by_no.values():
            rows = part.by_session.get(sidx)
            if rows:
                base = part.no << 32
                refs.extend(base | r for r in rows)
        keyed = sorted((self.key(r), r) for r in refs)
        merged = array("q")
        last: tuple[Any, ...] = ()
        start = 0
        for key, ref in keyed:
            if key == last:
                continue  # the same event twice (union merge, cherry-pick)
            last = key
            merged.append(ref)
            if self.kind(ref) == DELETE:
                start = len(merged)
        return History(merged, last, start)

    def latest_head(self) -> tuple[int, int] | None:
        """(sidx, ref) of the newest live snapshot over all sessions (kept up to date as rows
        are folded; worked out again after a file was dropped)."""
        with self.lock:
            if self._latest is None:
                best = None
                for sidx, (key, ref, kind) in self.heads.items():
                    if kind == SNAPSHOT and (best is None or key > best[0]):
                        best = (key, sidx, ref)
                if best is None:
                    return None
                self._latest = best
            return self._latest[1], self._latest[2]

    def live_heads(self) -> list[tuple[tuple[Any, ...], int, int]]:
        """(key, sidx, ref) of every session whose newest event is a snapshot, newest first."""
        with self.lock:
            heads = [(h[0], sidx, h[1]) for sidx, h in self.heads.items() if h[2] == SNAPSHOT]
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
        with self.lock:
            wanted: dict[int, list[tuple[int, int, int, int]]] = {}
            for i, ref in enumerate(refs):
                part = self.by_no.get(ref >> 32)
                if part is None:
                    raise Stale(ref, ref >> 32)
                row = ref & 0xFFFF_FFFF
                wanted.setdefault(part.no, []).append(
                    (part.off[row], part.ln[row], i, part.idh[row])
                )
            files = {no: (self.by_no[no].path, self.by_no[no].ino) for no in wanted}
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
        key = (self.user, ref)
        cached: Summary | None = self.summaries.get(key)
        if cached is not None:
            return cached
        found = summarize(ref, self.read(ref))
        self.summaries.put(key, found, found.size)
        return found

    def find_id(self, event_id: str) -> Iterable[int]:
        """Refs of rows whose id hash matches `event_id` (confirm by reading)."""
        target = id_hash(event_id)
        with self.lock:
            found = []
            for part in self.by_no.values():
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
        with self.lock:
            return [p for part in self.parts.values() for p in part.problems]

    def event_count(self) -> int:
        with self.lock:
            return sum(len(p.ts) for p in self.by_no.values())

    def other_writers_max_ts(self, writer: str) -> int:
        """The newest ts of any other writer's event in these files (0 if none); worked out
        from the files folded now, so a file dropped or reverted no longer counts."""
        with self.lock:
            return max(
                (t for p in self.by_no.values() for w, t in p.max_ts.items() if w != writer),
                default=0,
            )


def fold_range(folder: str, user: str, name: str, start: int, end: int) -> dict[str, Any]:
    """Fold the lines of `folder/name` from `start` up to `end` in a fresh view (run in a child
    process by `fold_in_halves`); returns its rows as plain, picklable values."""
    view = UserView(Path(folder), user)
    part = view.new_part(name)
    part.consumed = start
    result = FoldResult()
    fd = os.open(part.path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        view.fold_lines(part, fd, result, end=end)
    finally:
        os.close(fd)
    return {
        "sessions": view.session_names,
        "writers": view.writer_names,
        "columns": {a: getattr(part, a).tobytes() for a, _ in COLUMNS},
        "by_session": {s: rows.tobytes() for s, rows in part.by_session.items()},
        "heads": {s: (*key, ref & 0xFFFF_FFFF, kind) for s, (key, ref, kind) in view.heads.items()},
        "idem": {k: r & 0xFFFF_FFFF for k, r in view.idem.items()},
        "max_ts": part.max_ts,
        "problems": [(p.offset, p.reason) for p in part.problems],
        "problem_count": part.problem_count,
        "consumed": part.consumed,
    }


def fold_child() -> None:
    """Entry point of a `fold_in_halves` child started as a subprocess: fold a range, pickle
    its rows to a descriptor."""
    import sys

    from .childfold import write_rows

    folder, user, name, start, end, out_fd = sys.argv[1:7]
    write_rows(fold_range(folder, user, name, int(start), int(end)), int(out_fd))
