"""Projections: one user's logs folded into "latest per session" and each session's history.

Everything here is derived from the log files alone and can be thrown away (docs/storage.md).
Memory is kept small: a stored event costs one row of fixed-width numbers per column (`array`), not
a Python object — the history is positions in the log, read back on demand.

A row is addressed by a *ref*: `part_no << 32 | row`. Each log file is a *part*, folded
incrementally from the offset where the last fold stopped. A file is taken as appended to only
when it grew and still holds, byte for byte and at the same place, the last line folded from it
(that line's id makes it unique); a file replaced (device or inode changed), shrunk, changed
without growing (its mtime or ctime moved: an in-place edit), or whose last folded line is gone
is dropped and read again (docs/storage.md, "Reading").

Order is `(ts, writer, seq)` (then the id, so two clones holding the same events agree even on
damaged input); duplicate ids (union merges, cherry-picks) count once: identical events have
identical keys, so after sorting a duplicate sits next to its twin.

(Longer than our ~500-line habit because the cold-start loop in `_fold_lines` is written out
inline for speed — docs/decisions.md, "Speed" — beside the general `_add` it mirrors.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
import zlib
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from .codec import (
    _UUID_RE,
    BOM,
    MAX_LINE_BYTES,
    MAX_SEQ,
    MS_DIGITS,
    SCHEMA_VERSION,
    DecodeError,
    Event,
    data_problem,
    decode,
    event_from_record,
    id_hash,
    loads,
    ts_to_ms,
)
from .errors import StorageError
from .lru import ByteLRU
from .model import LIST_FIELDS, Problem

if TYPE_CHECKING:
    from .log import Appended

from .log import tail_lines

SNAPSHOT, DELETE = 0, 1
_MAX_PROBLEMS = 100  # per part; the count goes on
# Appends and git both change the folder's mtime; a tool that edits a log in place does not, so
# every file is looked at anyway this often (the server's watcher notices such edits at once).
FULL_CHECK_SECONDS = 1.0
SETTLE_NS = 20_000_000
# A cold fold of more than this many bytes is shared with a child process (two cores, two
# halves); smaller ones are not worth its start-up (~0.15 s).
PARALLEL_FOLD_BYTES = 64 << 20  # a cold fold at least this big is shared with a child process
SUMMARY_BYTES = 16 << 20  # session-head summaries kept for filtered listings, per store


class Stale(StorageError):
    """A log file changed under a read (a git checkout?) and kept changing while the read was
    tried again (HTTP 503: retry). `part` is the number of the part found changed, if known."""

    def __init__(self, where: int = 0, part: int | None = None):
        super().__init__(
            "The log changed during the read (a git checkout?) and kept changing. Retry."
        )
        self.where = where
        self.part = part


class Part:
    """The rows folded from one log file."""

    def __init__(self, no: int, path: Path):
        self.no = no
        self.path = path
        self.dev = self.ino = -1
        self.seen_size = -1
        self.seen_mtime = -1
        self.seen_ctime = -1
        self.consumed = 0
        # The last line folded (offset, bytes with its newline): proof that a grown file was
        # appended to, not rewritten.
        self.last_off = 0
        self.last = b""
        self.max_ts: dict[str, int] = {}  # writer -> newest ts among this file's rows
        # CRC-32 of the file's bytes [0, crc_at), kept up by the projection cache; a part loaded
        # from the cache is `unverified` until the first time its file changed is checked.
        self.crc = 0
        self.crc_at = 0
        self.unverified = False
        self.ts = array("q")
        self.seq = array("q")
        self.widx = array("i")
        self.off = array("q")
        self.ln = array("i")
        self.kind = array("b")
        self.idh = array("q")
        self.by_session: dict[int, array[int]] = {}
        self.problems: list[Problem] = []
        self.problem_count = 0

    def report(self, offset: int, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(Problem(str(self.path), offset, reason))


class History:
    """A session's merged, de-duplicated rows; `refs[start:]` is the live history."""

    __slots__ = ("refs", "last_key", "start")

    def __init__(self, refs: array[int], last_key: tuple[Any, ...], start: int):
        self.refs = refs
        self.last_key = last_key
        self.start = start

    @property
    def deleted(self) -> bool:
        return self.start == len(self.refs) and len(self.refs) > 0

    def push(self, key: tuple[Any, ...], ref: int, kind: int) -> bool:
        """Add the session's newest event; False if it is not the newest (sort again)."""
        if key <= self.last_key:
            return False
        self.refs.append(ref)
        self.last_key = key
        if kind == DELETE:
            self.start = len(self.refs)
        return True


# A session's head: (key, ref, kind) of its newest event. A plain tuple: one is made per folded
# event while reading a log cold.
Head = tuple[tuple[Any, ...], int, int]


class Summary(NamedTuple):
    """What filtering and listing need of a session's newest snapshot — a few short fields, not
    its data (a snapshot may hold a megabyte of values; a listing must not hold them all)."""

    ref: int
    session_id: str
    snapshot_id: str
    ts: str
    fields: dict[str, Any]  # event, project_path, git_branch: what `Filters` looks at
    counts: dict[str, int]

    @property
    def size(self) -> int:
        """About what it costs to keep (bytes)."""
        return 600 + sum(len(v) for v in self.fields.values() if isinstance(v, str))


def summarize(ref: int, ev: Event) -> Summary:
    data = ev.data
    fields = {name: data.get(name) for name in ("event", "project_path", "git_branch")}
    counts = {name: len(data.get(name) or []) for name in LIST_FIELDS}
    return Summary(ref, ev.session_id, ev.id, ev.ts, fields, counts)


class FoldResult:
    """What a fold changed: the sessions it touched, and whether a file was read anew."""

    __slots__ = ("touched", "rebuilt")

    def __init__(self) -> None:
        self.touched: set[int] = set()
        self.rebuilt = False


class UserView:
    """The projection of `log/<user>/`. Thread-safe: every public method takes `lock`."""

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

    # --- folding -----------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> bool:
        """Fold whatever changed on disk since the last call. Returns True if anything did.

        One stat of the folder answers "nothing changed": every append moves the folder's mtime
        forward (`log.touch_folder`), and git's replacements change it too. `force` looks at
        every file anyway (the watcher uses it, for edits made in place by other tools).
        """
        try:
            st = os.lstat(self.folder)  # a linked user folder is not read (docs/storage.md)
            stamp: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
            if not stat.S_ISDIR(st.st_mode):
                stamp = None
        except OSError:
            stamp = None
        now = time.monotonic()
        if (
            not force
            and stamp is not None
            and stamp == self._stamp
            and now - self._full_at < FULL_CHECK_SECONDS
        ):
            return False
        with self.lock:
            # A folder changed in the last few ms may change again within the same tick of the
            # kernel's coarse clock (git writing files) and keep its mtime: do not trust it yet.
            settled = stamp is not None and time.time_ns() - stamp[1] > SETTLE_NS
            self._stamp = stamp if settled else None
            self._full_at = now
            entries = {}
            if stamp is not None and _real_dir(self.folder.parent):
                try:
                    entries = {
                        e.name: e.stat(follow_symlinks=False)
                        for e in os.scandir(self.folder)
                        if e.name.endswith(".jsonl") and e.is_file(follow_symlinks=False)
                    }
                except (FileNotFoundError, NotADirectoryError):
                    entries = {}
                except OSError as exc:  # out of descriptors, an I/O error: not "no files"
                    self._stamp = None
                    raise _unreadable(self.folder, exc) from exc
            changed = False
            touched: set[int] = set()
            for name in [n for n in self.parts if n not in entries]:
                touched |= self._drop(self.parts[name])
                changed = True
            for name, st in entries.items():
                part = self.parts.get(name)
                if part is None:
                    part = self._new_part(name)
                elif (
                    st.st_size == part.seen_size
                    and st.st_mtime_ns == part.seen_mtime
                    and st.st_ctime_ns == part.seen_ctime
                    and st.st_ino == part.ino
                    and st.st_dev == part.dev
                ):
                    continue
                elif not _appended(part, st):
                    touched |= self._drop(part)
                    part = self._new_part(name)
                result = self._fold(part)
                touched |= result.touched
                changed = True
            if changed:
                self._changed(touched)
            return changed

    def reset(self) -> None:
        """Forget every file's fold: the next `refresh` reads them all again."""
        with self.lock:
            touched: set[int] = set()
            for part in list(self.parts.values()):
                touched |= self._drop(part)
            self._stamp = None
            self._changed(touched)

    def invalidate(self, part_no: int | None) -> None:
        """A read found this part's file changed: fold it again on the next refresh."""
        with self.lock:
            part = self.by_no.get(part_no) if part_no is not None else None
            if part is None:
                self._stamp = None
                return
            touched = self._drop(part)
            self._new_part(part.path.name)
            self._stamp = None
            self._changed(touched)

    def _changed(self, touched: set[int]) -> None:
        self.generation += 1  # (cached summaries are keyed by ref: a new head is a new key)

    def note_append(self, a: Appended, ev: Event) -> int | None:
        """Fold a line this process just appended without reading it back, when nothing else
        was appended to its file since the last fold. Returns its ref, or None (then refresh)."""
        offset, line = a.offset, a.line
        size_after, mtime_ns = a.size_after, a.mtime_ns
        folder_before, folder_after = a.folder_mtime_before, a.folder_mtime_ns
        with self.lock:
            part = self.parts.get(os.path.basename(a.path))
            if part is None or part.ino != a.ino or part.consumed != offset:
                return None
            result = FoldResult()
            row = self._add_row(part, ev, offset, len(line) - 1, result)
            part.consumed = offset + len(line)
            exact = size_after == part.consumed
            part.seen_size = size_after if exact else -1
            part.seen_mtime = mtime_ns if exact else -1
            part.seen_ctime = a.ctime_ns if exact else -1
            part.last_off, part.last = offset, line
            if self._stamp is not None and exact and self._stamp[1] == folder_before:
                # The folder changed only by our own touch: nothing else to fold because of it.
                self._stamp = (self._stamp[0], folder_after)
            self._changed(result.touched)
            return part.no << 32 | row

    def _new_part(self, name: str) -> Part:
        part = Part(self._next_no, self.folder / name)
        self._next_no += 1
        self.parts[name] = part
        self.by_no[part.no] = part
        return part

    def _drop(self, part: Part) -> set[int]:
        self._latest = None
        self.rebuilt = True
        del self.parts[part.path.name]
        del self.by_no[part.no]
        touched = set(part.by_session)
        for sidx in touched:
            self.histories.pop(sidx, None)
            self._recompute_head(sidx)
        self.idem = {k: r for k, r in self.idem.items() if r >> 32 != part.no}
        return touched

    def _fold(self, part: Part) -> FoldResult:
        result = FoldResult()
        try:
            fd = os.open(part.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno in _PASSING:
                self._stamp = None
                raise _unreadable(part.path, exc) from exc
            return result  # gone, a link, not readable by us: skipped (`verify` reports it)
        try:
            st = os.fstat(fd)
            if part.ino == -1:
                part.dev, part.ino = st.st_dev, st.st_ino
            elif (
                not _appended(part, st)
                or not _holds_last(fd, part)
                or (part.unverified and prefix_crc(fd, part.consumed) != part.crc)
            ):
                # Replaced or rewritten between stat and open: read it all again.
                result.touched |= self._drop(part)
                part = self._new_part(part.path.name)
                part.dev, part.ino = st.st_dev, st.st_ino
                result.rebuilt = True
            if st.st_size - part.consumed >= PARALLEL_FOLD_BYTES:
                self._fold_in_halves(part, fd, st.st_size, result)
            self._fold_lines(part, fd, result)
            part.seen_size, part.seen_mtime = st.st_size, st.st_mtime_ns
            part.seen_ctime = st.st_ctime_ns
            part.unverified = False
            _remember_last(fd, part)
        finally:
            os.close(fd)
        return result

    def _fold_in_halves(self, part: Part, fd: int, size: int, result: FoldResult) -> None:
        """A big cold fold on a machine with several cores: a child process folds the second
        half of the file while this one folds the first; then its rows are appended. Any
        trouble with the child and the caller folds the rest itself, as usual.

        A process with one thread (the CLI, a hook, a script) forks: the child starts at once.
        With other threads running (a server), forking could copy a lock some thread holds, so
        the child is a plain `python -c` subprocess instead — not multiprocessing, whose
        spawning would import the caller's main script again in the child."""
        import pickle
        import subprocess
        import sys
        import tempfile

        if (os.cpu_count() or 1) < 2 or os.environ.get(_CHILD_ENV):
            return
        forking = _can_fork()
        # The child pickles its rows at the end, and a subprocess first starts Python (~0.15 s:
        # what this process folds of ~10 MiB meanwhile): give it a little less than half.
        todo = size - part.consumed
        share = todo * 525 // 1000 + (1 << 20) if forking else todo * 515 // 1000 + (10 << 20)
        middle = part.consumed + min(share, todo * 3 // 4)
        cut = os.pread(fd, 1 << 20, middle).find(b"\n")
        if cut < 0:
            return
        split = middle + cut + 1
        # The child writes its rows to a file, not a pipe (it finishes while we still fold,
        # instead of waiting for us to read) — one with no name, so nothing is left behind
        # even if both are killed.
        with tempfile.TemporaryFile() as out:
            out_fd = out.fileno()
            child: Any
            if forking:
                child = self._fork_child(part, split, size, out_fd)
            else:
                args = [str(self.folder), self.user, part.path.name, str(split), str(size)]
                env = {**os.environ, _CHILD_ENV: "1", "PYTHONPATH": os.pathsep.join(sys.path)}
                try:
                    child = subprocess.Popen(
                        [sys.executable, "-c", "from sessionmem.projection import _child; _child()"]
                        + [*args, str(out_fd)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        env=env,
                        pass_fds=(out_fd,),
                    )
                except OSError:
                    child = None
            if child is None:
                return
            try:
                self._fold_lines(part, fd, result, end=split)
                if _finished(child) and part.consumed == split:
                    out.seek(0)
                    got = pickle.loads(out.read())  # our own child's answer, not repository data
                    self._merge_range(part, got, result)
            except Exception:  # noqa: BLE001 - the child's half is simply folded here instead
                _stop(child)

    def _fork_child(self, part: Part, split: int, size: int, out_fd: int) -> int | None:
        """Fork a child that folds [split, size) into `out_fd`; its pid, or None."""
        try:
            pid = os.fork()
        except OSError:
            return None
        if pid == 0:  # the child: fold the second half, write it down, and leave at once
            code = 1
            try:
                _write_rows(
                    fold_range(str(self.folder), self.user, part.path.name, split, size), out_fd
                )
                code = 0
            finally:
                os._exit(code)
        return pid

    def _merge_range(self, part: Part, got: dict[str, Any], result: FoldResult) -> None:
        """Append the rows a `fold_range` child folded, in this view's numbering."""
        smap = [_intern(self.session_index, self.session_names, n) for n in got["sessions"]]
        wmap = [_intern(self.writer_index, self.writer_names, n) for n in got["writers"]]
        row0 = len(part.ts)
        base = part.no << 32
        for attr, raw in got["columns"].items():
            column = getattr(part, attr)
            if attr == "widx" and wmap != list(range(len(wmap))):
                child = array("i")
                child.frombytes(raw)
                column.extend([wmap[w] for w in child])
            else:
                column.frombytes(raw)
        for csidx, raw in got["by_session"].items():
            rows = array("i")
            rows.frombytes(raw)
            sidx = smap[csidx]
            target = part.by_session.get(sidx)
            if target is None:
                target = part.by_session[sidx] = array("i")
            target.extend([row0 + r for r in rows])
            self.histories.pop(sidx, None)
            result.touched.add(sidx)
        for csidx, (ts, writer, seq, idh, row, kind) in got["heads"].items():
            key = (ts, writer, seq, idh)
            head = self.heads.get(smap[csidx])
            if head is None or key > head[0]:
                self.heads[smap[csidx]] = (key, base | (row0 + row), kind)
        for key, row in got["idem"].items():
            self.idem.setdefault(key, base | (row0 + row))
        for writer, ts in got["max_ts"].items():
            if ts > part.max_ts.get(writer, -1):
                part.max_ts[writer] = ts
        for offset, reason in got["problems"]:
            part.report(offset, reason)
        part.problem_count += got["problem_count"] - len(got["problems"])
        part.consumed = got["consumed"]
        self._latest = None

    def _fold_lines(self, part: Part, fd: int, result: FoldResult, end: int = -1) -> None:
        """Fold every complete line from `part.consumed`. This is the cold-start loop, so the
        common case is checked and added inline, with everything it touches bound to locals;
        an unusual line takes the full decoder (which names what is wrong) and `_add_row`."""
        user = self.user
        sessions, writers = self.session_index, self.writer_index
        seconds = self._seconds
        heads, histories, idem_map, max_ts = self.heads, self.histories, self.idem, part.max_ts
        ts_add, seq_add, widx_add = part.ts.append, part.seq.append, part.widx.append
        off_add, ln_add, kind_add, idh_add = (
            part.off.append,
            part.ln.append,
            part.kind.append,
            part.idh.append,
        )
        by_session = part.by_session
        touched = result.touched
        base = part.no << 32
        json_loads, uuid_ok, data_bad = orjson.loads, _UUID_RE.match, data_problem
        row = len(part.ts) - 1
        latest = self._latest
        # A cold fold (no history or newest snapshot worked out yet) leaves each session's head
        # and each writer's newest ts to the end: in a writer's own file, lines come in (ts,
        # seq) order, so a session's last row is its newest — checked as it goes (`in_order`),
        # and worked out row by row at the end when it is not.
        deferred = not histories and latest is None
        last_rows: dict[int, int] = {}
        first_row = row + 1
        in_order, prev_ts, prev_seq, only_writer = True, -1, -1, None
        # A buffered reader's line iteration is the fastest way through a file in Python, and
        # holds one line at a time (a cold start's memory is the projection, not the file).
        reader = os.fdopen(os.dup(fd), "rb", buffering=1 << 20)
        pos = part.consumed
        limit = end if end >= 0 else 1 << 62
        try:
            reader.seek(pos)
            for line in reader:
                if line[-1:] != b"\n":
                    break  # not a line yet: a writer is mid-write, or died
                start = pos
                pos += len(line)
                if pos > limit:
                    pos = start
                    break
                if line.isspace():
                    continue
                if len(line) > MAX_LINE_BYTES:
                    part.report(start, f"line of {len(line)} bytes is longer than any event")
                    continue
                # Fast path: a canonical line of a session and writer already seen. Anything
                # else (a first sight, or anything odd) takes the full decoder below.
                try:
                    r = json_loads(line)
                    sid, writer, seq, ts, eid = (
                        r["session_id"],
                        r["writer"],
                        r["seq"],
                        r["ts"],
                        r["id"],
                    )
                    typ = r["type"]
                    sidx = sessions.get(sid)
                    widx = writers.get(writer)
                    ms = seconds.get(ts[:19]) if type(ts) is str else None
                    # Exactly `codec.decode`'s rules (a test holds the two together): a line
                    # this accepts, the decoder accepts and reads the same way.
                    data = r["data"]
                    ok = (
                        sidx is not None
                        and widx is not None
                        and ms is not None
                        and r["user"] == user
                        and r["v"] == SCHEMA_VERSION
                        and type(seq) is int
                        and 0 < seq <= MAX_SEQ
                        and (typ == "snapshot" or typ == "delete")
                        and type(data) is dict
                        and type(eid) is str
                        and uuid_ok(eid) is not None
                        and len(ts) == 24
                        and ts[19] == "."
                        and ts[23] == "Z"
                        and ts[20:23] in MS_DIGITS
                        and type(r.get("idem", "")) is str
                        and type(r.get("body", "")) is str
                        and (typ == "delete" or data_bad(data) is None)
                    )
                except (ValueError, KeyError, TypeError):
                    ok = False
                if not ok:
                    # Any other line: the full decoder names what is wrong. Nothing in a line
                    # may stop the rest of the file from being read.
                    at, body = (start + 3, line[3:]) if line.startswith(BOM) else (start, line)
                    try:
                        ev = decode(body)
                        if ev.user != user:
                            part.report(start, f"event of user {ev.user!r} in {user!r}'s folder")
                            continue
                        second = ev.ts[:19]
                        if second not in seconds:
                            if len(seconds) > 100_000:
                                seconds.clear()
                            seconds[second] = ts_to_ms(ev.ts[:20] + "000Z")
                        self._latest = latest  # the slow path keeps these itself
                        self._add_row(part, ev, at, len(body) - 1, result)
                    except DecodeError as exc:
                        part.report(start, str(exc))
                        continue
                    except Exception as exc:  # noqa: BLE001 - a reader is total (STYLE 14)
                        part.report(start, f"unreadable event ({type(exc).__name__}: {exc})")
                        continue
                    latest, row = self._latest, len(part.ts) - 1
                    in_order = False  # (its head is set already; the end looks at every row)
                    continue
                # -- the inline `_add`: keep the two in step --
                assert sidx is not None and widx is not None
                tms = ms + int(ts[20:23])  # type: ignore[operator]
                kind = DELETE if typ == "delete" else SNAPSHOT
                idh = int(eid[-17:].replace("-", ""), 16) & 0x7FFF_FFFF_FFFF_FFFF  # id_hash
                row += 1
                ts_add(tms)
                seq_add(seq)
                widx_add(widx)
                off_add(start)
                ln_add(len(line) - 1)
                kind_add(kind)
                idh_add(idh)
                rows = by_session.get(sidx)
                if rows is None:
                    rows = by_session[sidx] = array("i")
                rows.append(row)
                idem = r.get("idem")
                if type(idem) is str:
                    idem_map.setdefault(idem, base | row)
                if deferred:
                    last_rows[sidx] = row
                    if tms < prev_ts or seq <= prev_seq or writer != only_writer:
                        if only_writer is None:
                            only_writer = writer
                        else:
                            in_order = False
                    prev_ts, prev_seq = tms, seq
                    continue
                if tms > max_ts.get(writer, -1):
                    max_ts[writer] = tms
                ref = base | row
                key = (tms, writer, seq, idh)
                touched.add(sidx)
                head = heads.get(sidx)
                if head is None or key > head[0]:
                    heads[sidx] = (key, ref, kind)
                if histories:
                    hist = histories.get(sidx)
                    if hist is not None and not hist.push(key, ref, kind):
                        del histories[sidx]
                if latest is not None:
                    if kind == SNAPSHOT and key > latest[0]:
                        latest = (key, sidx, ref)
                    elif kind == DELETE and sidx == latest[1]:
                        latest = None
        finally:
            reader.close()
            part.consumed = pos
            self._latest = latest
            if last_rows:
                self._settle_heads(part, last_rows, first_row, in_order, result)

    def _settle_heads(
        self,
        part: Part,
        last_rows: dict[int, int],
        first_row: int,
        in_order: bool,
        result: FoldResult,
    ) -> None:
        """The end of a cold fold (`_fold_lines`): heads of the sessions it added rows to, and
        the newest ts of each writer, from rows `first_row` on."""
        ts, seq, widx, idh = part.ts, part.seq, part.widx, part.idh
        names, heads, max_ts, base = self.writer_names, self.heads, part.max_ts, part.no << 32
        for sidx, last in last_rows.items():
            if in_order:
                best = last
            else:  # the newest of the session's rows from this fold
                best, best_key = -1, None
                for r in reversed(part.by_session[sidx]):
                    if r < first_row:
                        break
                    k = (ts[r], names[widx[r]], seq[r], idh[r])
                    if best_key is None or k > best_key:
                        best, best_key = r, k
            key = (ts[best], names[widx[best]], seq[best], idh[best])
            head = heads.get(sidx)
            if head is None or key > head[0]:
                heads[sidx] = (key, base | best, part.kind[best])
            result.touched.add(sidx)
        newest: dict[int, int] = {}
        if in_order:
            newest[widx[len(ts) - 1]] = ts[len(ts) - 1]
        else:
            for r in range(first_row, len(ts)):
                if ts[r] > newest.get(widx[r], -1):
                    newest[widx[r]] = ts[r]
        for w, t in newest.items():
            if t > max_ts.get(names[w], -1):
                max_ts[names[w]] = t
        self._latest = None  # worked out again on demand

    def _add_row(self, part: Part, ev: Event, offset: int, length: int, result: FoldResult) -> int:
        return self._add(
            part,
            ev.session_id,
            ev.writer,
            ev.seq,
            ts_to_ms(ev.ts),
            DELETE if ev.type == "delete" else SNAPSHOT,
            id_hash(ev.id),
            ev.idem,
            offset,
            length,
            result,
        )

    def _add(
        self,
        part: Part,
        session_id: str,
        writer: str,
        seq: int,
        ts: int,
        kind: int,
        idh: int,
        idem: str | None,
        offset: int,
        length: int,
        result: FoldResult,
    ) -> int:
        sidx = _intern(self.session_index, self.session_names, session_id)
        widx = _intern(self.writer_index, self.writer_names, writer)
        row = len(part.ts)
        part.ts.append(ts)
        part.seq.append(seq)
        part.widx.append(widx)
        part.off.append(offset)
        part.ln.append(length)
        part.kind.append(kind)
        part.idh.append(idh)
        rows = part.by_session.get(sidx)
        if rows is None:
            rows = part.by_session[sidx] = array("i")
        rows.append(row)
        if ts > part.max_ts.get(writer, -1):
            part.max_ts[writer] = ts
        ref = part.no << 32 | row
        if idem is not None:
            self.idem.setdefault(idem, ref)
        key = (ts, writer, seq, idh)
        result.touched.add(sidx)
        head = self.heads.get(sidx)
        if head is None or key > head[0]:
            self.heads[sidx] = (key, ref, kind)
        hist = self.histories.get(sidx)
        if hist is not None and not hist.push(key, ref, kind):
            del self.histories[sidx]  # arrived out of order (a merge): sort again on demand
        if self._latest is not None:
            if kind == SNAPSHOT and key > self._latest[0]:
                self._latest = (key, sidx, ref)
            elif kind == DELETE and sidx == self._latest[1]:
                self._latest = None
        return row

    def _recompute_head(self, sidx: int) -> None:
        best: Head | None = None
        for part in self.by_no.values():
            for row in part.by_session.get(sidx, ()):
                key = self.key(part.no << 32 | row)
                if best is None or key > best[0]:
                    best = (key, part.no << 32 | row, part.kind[row])
        if best is None:
            self.heads.pop(sidx, None)
        else:
            self.heads[sidx] = best

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
                if exc.errno in _PASSING:
                    raise _unreadable(path, exc) from exc
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


_CHILD_ENV = "SESSIONMEM_FOLD_CHILD"


def _intern(index: dict[str, int], names: list[str], name: str) -> int:
    """The number of a session or writer name in this view, given one on first sight."""
    number = index.get(name)
    if number is None:
        number = index[name] = len(names)
        names.append(name)
    return number


def _can_fork() -> bool:
    """Only a process with one thread forks its fold child (see `_fold_in_halves`)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def _child() -> None:
    """Entry point of the `_fold_in_halves` child: fold a range, pickle it to a descriptor."""
    import sys

    folder, user, name, start, end, out_fd = sys.argv[1:7]
    _write_rows(fold_range(folder, user, name, int(start), int(end)), int(out_fd))


def _write_rows(got: dict[str, Any], out_fd: int) -> None:
    import pickle

    with os.fdopen(os.dup(out_fd), "wb") as f:
        f.write(pickle.dumps(got, protocol=pickle.HIGHEST_PROTOCOL))


def _finished(child: Any) -> bool:
    """Wait for a fold child (a Popen, or a forked pid): did it succeed?"""
    if isinstance(child, int):
        return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    return bool(child.wait() == 0)


def _stop(child: Any) -> None:
    with contextlib.suppress(OSError, ChildProcessError):
        if isinstance(child, int):
            os.kill(child, 9)
            os.waitpid(child, 0)
        else:
            child.kill()
            child.wait()


def fold_range(folder: str, user: str, name: str, start: int, end: int) -> dict[str, Any]:
    """Fold the lines of `folder/name` from `start` up to `end` in a fresh view (run in a child
    process by `UserView._fold_in_halves`); returns its rows as plain, picklable values."""
    view = UserView(Path(folder), user)
    part = view._new_part(name)
    part.consumed = start
    result = FoldResult()
    fd = os.open(part.path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        view._fold_lines(part, fd, result, end=end)
    finally:
        os.close(fd)
    return {
        "sessions": view.session_names,
        "writers": view.writer_names,
        "columns": {
            a: getattr(part, a).tobytes() for a in ("ts", "seq", "widx", "off", "ln", "kind", "idh")
        },
        "by_session": {s: rows.tobytes() for s, rows in part.by_session.items()},
        "heads": {s: (*key, ref & 0xFFFF_FFFF, kind) for s, (key, ref, kind) in view.heads.items()},
        "idem": {k: r & 0xFFFF_FFFF for k, r in view.idem.items()},
        "max_ts": part.max_ts,
        "problems": [(p.offset, p.reason) for p in part.problems],
        "problem_count": part.problem_count,
        "consumed": part.consumed,
    }


def prefix_crc(fd: int, end: int, crc: int = 0, at: int = 0) -> int:
    """CRC-32 of the file's bytes [0, end), given the CRC of [0, at). (It checks a cached fold
    against the file: every byte, at memory speed — far less than a fold.)"""
    while at < end:
        chunk = os.pread(fd, min(end - at, 1 << 20), at)
        if not chunk:
            return -1  # shorter than it should be: never equal to a CRC
        crc = zlib.crc32(chunk, crc)
        at += len(chunk)
    return crc


# Failures that pass (or that a person must fix) rather than say anything about the files: a
# read meeting one answers "storage unavailable, retry" and changes nothing it holds.
_PASSING = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EIO, errno.EAGAIN, errno.EINTR}


def _unreadable(path: Path, exc: OSError) -> StorageError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StorageError(f"Could not read {path}: {reason}. Nothing was changed; retry shortly.")


def _real_dir(path: Path) -> bool:
    """Is `path` a directory itself, not a link to one?"""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _appended(part: Part, st: os.stat_result) -> bool:
    """Could the file `st` describes be the part's file with lines appended? (Then its last
    folded line is checked too: `_holds_last`.) An append always grows a file; one that
    changed without growing was edited in place."""
    if (st.st_dev, st.st_ino) != (part.dev, part.ino) or st.st_size < part.consumed:
        return False
    if st.st_size > part.seen_size:
        return True
    return st.st_mtime_ns == part.seen_mtime and st.st_ctime_ns == part.seen_ctime


def _holds_last(fd: int, part: Part) -> bool:
    """Does the file still hold the last line folded from it, whole and at the same place?"""
    if not part.consumed:
        return True
    off, want = part.last_off, part.last
    if off:
        off, want = off - 1, b"\n" + want  # and a line starts there
    return bool(want) and os.pread(fd, len(want), off) == want


def _remember_last(fd: int, part: Part) -> None:
    """Remember the last non-blank line before `part.consumed` (with any blank lines after it)."""
    end = part.consumed
    if not end:
        part.last_off, part.last = 0, b""
        return
    start = max(0, end - 4096)
    chunk = os.pread(fd, end - start, start)
    nl = chunk.rfind(b"\n", 0, len(chunk) - 1)
    if nl >= 0 and not chunk[nl + 1 :].isspace():
        part.last_off, part.last = start + nl + 1, chunk[nl + 1 :]
        return
    off = 0
    for at, line in tail_lines(fd, end):
        if line.strip():
            off = at
            break
    part.last_off, part.last = off, os.pread(fd, end - off, off)
