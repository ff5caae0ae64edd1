"""The append-only log files: how one event is appended durably, and how lines are read back.

Append protocol (docs/storage.md, "Writing"): take an exclusive `flock` on this writer's lock file
under `.local/`, open the log with O_APPEND | O_NOFOLLOW (a descriptor kept from the last append
only while the path still names that file: git replaces files on checkout), set aside a torn tail
left by a crashed writer, write the whole line(s) with one `write`, release the lock, then `fsync`
— shared by every thread that appended meanwhile (group commit) — before acknowledging.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import orjson

from .codec import MAX_SEQ, DecodeError, decode, now_ms
from .errors import StorageError, storage_error
from .layout import Layout

_TAIL_CHUNK = 64 * 1024
# How far ahead of this machine's clock another event's ts may pull this writer's clock (the
# hybrid-logical clock, docs/storage.md "Clocks"): a clone with a wrong clock cannot drag every
# later snapshot into its future. Events beyond it are still read, and `verify` warns of them.
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000


class WouldBlock(Exception):
    """The writer lock is held by someone else right now (`blocking=False`)."""


class LogFile:
    """A writer's log file kept open between appends while its path still names it (one
    `lstat` under the lock checks that); closed once replaced and every pending sync is done."""

    __slots__ = ("fd", "dev", "ino", "_refs", "_guard")

    def __init__(self, fd: int, dev: int, ino: int):
        self.fd, self.dev, self.ino = fd, dev, ino
        self._refs = 1  # the Appender's own; each unsynced batch holds one more
        self._guard = threading.Lock()

    def hold(self) -> LogFile:
        with self._guard:
            self._refs += 1
        return self

    def release(self) -> None:
        with self._guard:
            self._refs -= 1
            last = self._refs == 0
        if last:
            with contextlib.suppress(OSError):
                os.close(self.fd)


class Appended(NamedTuple):
    path: str
    offset: int
    line: bytes
    ino: int
    size_after: int  # the file's size just after the write, as fstat saw it
    mtime_ns: int
    ctime_ns: int
    folder_mtime_before: int  # the user's folder mtime before and after `touch_folder`
    folder_mtime_ns: int
    file: LogFile | None = (
        None  # held until the batch is synced (`Appender.sync`, `batch.SyncThread`)
    )
    dirs: tuple[str, ...] = ()  # folders whose entries are new, synced with it

    def done(self) -> None:
        """Let go of the file once the batch is synced (or will not be)."""
        if self.file is not None:
            self.file.release()


class _Mark(NamedTuple):
    """What this process last wrote to a log: if the file is still that inode at that size,
    nobody appended since, and the lock file's state and the file's tail need no reading."""

    seq: int
    ts: int
    ino: int
    size: int


def lock_path(layout: Layout, user: str, writer: str) -> Path:
    return layout.locks / f"{user}~{writer}.lock"


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tail_lines(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    """Complete lines among the file's first `size` bytes, last first, as (offset, line)."""
    buf = b""  # the bytes [pos, pos + len(buf)), always ending in a newline once `found`
    pos = size
    found = False
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        buf = os.pread(fd, pos - start, start) + buf
        pos = start
        if not found:
            nl = buf.rfind(b"\n")
            if nl < 0:
                continue
            found = True
            buf = buf[: nl + 1]
        while buf:
            prev = buf.rfind(b"\n", 0, len(buf) - 1)
            if prev < 0:
                if pos == 0:
                    yield 0, buf[:-1]
                    buf = b""
                break
            yield pos + prev + 1, buf[prev + 1 : -1]
            buf = buf[: prev + 1]
        if not buf:
            return


def last_event_mark(fd: int, size: int, limit: int = 64) -> tuple[int, int]:
    """(seq, ts_ms) of the last decodable event among the last `limit` lines, or (0, 0)."""
    for n, (_, line) in enumerate(tail_lines(fd, size)):
        if n >= limit:
            break
        if not line.strip():
            continue
        try:
            ev = decode(line)
        except DecodeError:
            continue
        return ev.seq, ev.ts_ms
    return 0, 0


def _set_aside_torn_tail(layout: Layout, fd: int, size: int, path: Path) -> int:
    """Move bytes after the last newline into quarantine and cut them off. Returns new size."""
    keep = 0
    for offset, line in tail_lines(fd, size):
        keep = offset + len(line) + 1
        break
    tail = os.pread(fd, size - keep, keep)
    layout.quarantine.mkdir(parents=True, exist_ok=True)
    name = f"{path.parent.name}~{path.stem}.{keep}.{now_ms()}.torn"
    qfd = os.open(layout.quarantine / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(qfd, tail)
        os.fsync(qfd)
    finally:
        os.close(qfd)
    os.ftruncate(fd, keep)
    return keep


class Appender:
    """Appends events to log files; one per Store (it caches lock descriptors, open log files,
    checked folders and what it last wrote).

    Lock files live in `.local/`, which git never touches, so their descriptors are kept open.
    A log file's descriptor is kept too, but used only while its path still names the same
    file (git replaces files on checkout). flock locks belong to an open file description, so
    threads of this process also take a threading lock.
    """

    def __init__(self, layout: Layout):
        self.layout = layout
        self.syncs = 0  # fsyncs made by `sync`; read by tests (threads' batches share one)
        self._locks: dict[tuple[str, str], tuple[threading.Lock, int]] = {}
        self._guard = threading.Lock()
        self._checked: dict[str, tuple[int, int]] = {}  # user folder -> (dev, ino) found real
        self._files: dict[str, LogFile] = {}  # path -> its open file (under its writer lock)
        self._marks: dict[str, _Mark] = {}  # path -> what this process last wrote to it
        self._paths: dict[tuple[str, str], tuple[str, str]] = {}  # (user, writer) -> paths

    def _lock(self, user: str, writer: str) -> tuple[threading.Lock, int]:
        key = (user, writer)
        found = self._locks.get(key)
        if found is not None:
            return found
        with self._guard:
            found = self._locks.get(key)
            if found is None:
                self.layout.locks.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock_path(self.layout, user, writer), os.O_RDWR | os.O_CREAT, 0o644)
                found = self._locks[key] = (threading.Lock(), fd)
        return found

    def close(self) -> None:
        with self._guard:
            for _, fd in self._locks.values():
                os.close(fd)
            self._locks.clear()
            for file in self._files.values():
                file.release()
            self._files.clear()

    def locked(
        self, user: str, writer: str, *, min_ts_ms: int = 0, blocking: bool = True
    ) -> LockedLog:
        """`with appender.locked(user, writer) as log:` holds `log/<user>/<writer>.jsonl`'s
        writer lock (the threads' lock, then the lock file's `flock`): what the caller checks
        and writes inside is serialised with every other writer of this file, in this process
        and in others. With `blocking=False`, entering raises `WouldBlock` rather than wait."""
        paths = self._paths.get((user, writer))
        if paths is None:
            folder = os.path.join(self.layout.log, user)
            paths = self._paths[(user, writer)] = (folder, os.path.join(folder, f"{writer}.jsonl"))
        return LockedLog(self, user, writer, paths[0], paths[1], min_ts_ms, blocking)

    def _open(self, path: str) -> tuple[LogFile, int]:
        """The open log file at `path` and its size: the kept one if the path still names it."""
        kept = self._files.get(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if (
            kept is not None
            and st is not None
            and (st.st_dev, st.st_ino) == (kept.dev, kept.ino)
            and stat.S_ISREG(st.st_mode)
        ):
            return kept, st.st_size
        if kept is not None:  # replaced (git checkout), moved or gone: let go of it
            del self._files[path]
            kept.release()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise StorageError(f"Could not append to {path}: it is not a regular file.")
        file = self._files[path] = LogFile(fd, st.st_dev, st.st_ino)
        return file, st.st_size

    def _check_folders(self, folder: str) -> bool:
        """Make sure `log/` and `log/<user>/` are real folders inside the memory folder, not
        links (nothing is written through a link: docs/storage.md); create them if missing.
        Returns whether the user's folder is new (its entry is synced with the first line).

        One `lstat` per append once a folder was checked: the user's folder as `log/` leads to
        it must still be the very folder (device and inode) found real last time; anything else
        (a link put in place, `log/` replaced) is checked again from the top."""
        try:
            st = os.lstat(folder)
            if self._checked.get(folder) == (st.st_dev, st.st_ino) and stat.S_ISDIR(st.st_mode):
                return False
        except OSError:
            pass
        new_dir = self._check_path(folder)
        with contextlib.suppress(OSError):
            st = os.lstat(folder)
            self._checked[folder] = (st.st_dev, st.st_ino)
        return new_dir

    def _check_path(self, folder: str) -> bool:
        new_dir = False
        for path in (str(self.layout.log), folder):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                try:
                    os.makedirs(path, exist_ok=True)
                except OSError as exc:
                    raise storage_error(f"append to {path}", exc) from exc
                new_dir = True
                continue
            except OSError as exc:
                raise storage_error(f"append to {path}", exc) from exc
            if stat.S_ISLNK(mode):
                raise StorageError(
                    f"Refusing to write through the link {path}: sessionmem never follows links "
                    "inside the memory folder. Replace it with a real folder (sessionmem verify "
                    "lists every link)."
                )
            if not stat.S_ISDIR(mode):
                raise StorageError(f"Could not append under {path}: it is not a folder.")
        return new_dir

    def sync(self, appended: Appended, durable: bool = True) -> None:
        """Make an append (a whole batch of lines) durable, then let go of its file."""
        try:
            if durable:
                # One caller at a time: the thread batches' leader, for its whole batch.
                assert appended.file is not None
                os.fsync(appended.file.fd)
                self.syncs += 1
                for folder in appended.dirs:
                    fsync_dir(folder)
        except OSError as exc:
            raise StorageError(f"Could not sync {appended.path} to disk: {exc}.") from exc
        finally:
            appended.done()


class LockedLog:
    """One writer's log file while its lock is held (`with Appender.locked(...) as log`): the
    stamp (seq, ts) the next line gets, and the write of whole lines.

    `seq` is dense per writer file and `ts` never goes behind the writer's last event nor below
    `min_ts_ms` (the newest event this process has seen from other writers, plus one) — unless
    that is further ahead of this machine's clock than MAX_CLOCK_SKEW_MS allows."""

    def __init__(
        self,
        appender: Appender,
        user: str,
        writer: str,
        folder: str,
        path: str,
        min_ts: int,
        blocking: bool,
    ):
        self.path = path
        self._appender, self._user, self._writer = appender, user, writer
        self._folder, self._min_ts, self._blocking = folder, min_ts, blocking
        self._file: LogFile | None = None
        self._tlock: threading.Lock | None = None
        self._lock_fd = -1
        self._new_dir = False
        self._size = self._ino = self._seq = self._ts = 0
        self._lines: list[bytes] = []

    def __enter__(self) -> LockedLog:
        appender, path = self._appender, self.path
        try:
            self._new_dir = appender._check_folders(self._folder)
            tlock, lock_fd = appender._lock(self._user, self._writer)
        except OSError as exc:  # a lock file, a folder, a stat: the one storage error
            raise storage_error(f"append to {path}", exc) from exc
        if not tlock.acquire(blocking=self._blocking):
            raise WouldBlock(path)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX if self._blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException as exc:
            tlock.release()
            if isinstance(exc, BlockingIOError):
                raise WouldBlock(path) from None
            if isinstance(exc, OSError):
                raise storage_error(f"append to {path}", exc) from exc
            raise
        self._tlock, self._lock_fd = tlock, lock_fd
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)  # the sync is outside it: group commit
        finally:
            assert self._tlock is not None
            self._tlock.release()

    def _start(self) -> None:
        """Open the file and learn where its writer stands (first stamp only: a batch whose
        every job was found stored opens nothing)."""
        try:
            file, size = self._appender._open(self.path)
        except OSError as exc:
            raise storage_error(f"append to {self.path}", exc) from exc
        mark = self._appender._marks.get(self.path)
        if mark is None or (mark.ino, mark.size) != (file.ino, size):
            # Another process appended, or git changed the file: read the state and the tail.
            try:
                if size and os.pread(file.fd, 1, size - 1) != b"\n":
                    layout = self._appender.layout
                    size = _set_aside_torn_tail(layout, file.fd, size, Path(self.path))
                state = _read_state(self._lock_fd)
                seq, ts = state.get("seq", 0), state.get("ts", 0)
                if state.get("ino") != file.ino or state.get("size") != size:
                    file_seq, file_ts = last_event_mark(file.fd, size)
                    seq, ts = max(seq, file_seq), max(ts, file_ts)
            except OSError as exc:
                raise storage_error(f"append to {self.path}", exc) from exc
            mark = _Mark(seq, ts, file.ino, size)
        self._file, self._size, self._ino = file, size, file.ino
        clock = now_ms()
        self._seq = mark.seq
        self._ts = min(max(mark.ts, self._min_ts), clock + MAX_CLOCK_SKEW_MS)

    def next_stamp(self) -> tuple[int, int]:
        """(seq, ts_ms) for the next line; taken only once `add` is given its line."""
        if self._file is None:
            self._start()
        if self._seq >= MAX_SEQ:
            raise StorageError(
                f"Could not append to {self.path}: its seq reached {MAX_SEQ}; "
                "give this clone a new writer id (delete .memory/.local/writer.json)."
            )
        return self._seq + 1, max(now_ms(), self._ts)

    def add(self, line: bytes, stamp: tuple[int, int]) -> None:
        """Queue the line built with `stamp` (the last `next_stamp`); the next stamp follows."""
        self._seq, self._ts = stamp
        self._lines.append(line)

    def write(self) -> list[Appended]:
        """Write every added line with one `write`, not synced yet: their `Appended`, which
        share one hold on the file for `Appender.sync` (or a `batch.SyncThread`) to sync and let go.
        Raises StorageError when nothing could be written (and leaves no partial line)."""
        lines, self._lines = self._lines, []
        if not lines:
            return []
        assert self._file is not None
        fd, size, path = self._file.fd, self._size, self.path
        blob = lines[0] if len(lines) == 1 else b"".join(lines)
        error = _write_all(fd, blob)
        if error is not None:
            # Disk full or a file size limit: leave no partial line behind.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            reason = os.strerror(error.errno) if error.errno else str(error)
            if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                reason += " (free some space, then retry: nothing was stored)"
            raise StorageError(f"Could not append to {path}: {reason}.") from error
        try:
            after = os.fstat(fd)
            folder_before, folder_mtime = touch_folder(self._folder)
            end = size + len(blob)
            _write_state(
                self._lock_fd, {"seq": self._seq, "ts": self._ts, "ino": self._ino, "size": end}
            )
        except OSError as exc:
            raise storage_error(f"append to {path}", exc) from exc
        self._appender._marks[path] = _Mark(self._seq, self._ts, self._ino, end)
        self._size = end
        dirs = (self._folder, os.path.dirname(self._folder)) if self._new_dir else (self._folder,)
        file = self._file.hold()
        out = []
        offset = size
        for line in lines:
            out.append(
                Appended(
                    path,
                    offset,
                    line,
                    self._ino,
                    after.st_size,
                    after.st_mtime_ns,
                    after.st_ctime_ns,
                    folder_before,
                    folder_mtime,
                    file,
                    dirs if not size else (),
                )
            )
            offset += len(line)
        return out


def touch_folder(folder: str) -> tuple[int, int]:
    """Move the folder's mtime strictly forward, so a reader learns of an append with one stat
    of the folder. Called under the writer lock; returns (mtime before, after)."""
    old = os.stat(folder).st_mtime_ns
    new = max(time.time_ns(), old + 1)
    os.utime(folder, ns=(new, new))
    return old, new


def _write_all(fd: int, line: bytes) -> OSError | None:
    """Write the whole line: one write, unless the kernel took only part of it (then the rest,
    still under the lock, where no reader counts a line before its newline)."""
    view = memoryview(line)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            return exc
        if n == 0:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
    return None


def _read_state(fd: int) -> dict[str, int]:
    raw = os.pread(fd, 512, 0).rstrip(b"\0 \n")
    if not raw:
        return {}
    try:
        state = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(fd: int, state: dict[str, int]) -> None:
    raw = orjson.dumps(state)
    os.pwrite(fd, raw.ljust(128), 0)
