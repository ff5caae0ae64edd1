"""The append-only log files: how one event is appended durably, and how lines are read back.

Append protocol (docs/storage.md, "Writing"): open by path with O_APPEND (never keep a descriptor
across appends: git replaces files on checkout), take an exclusive `flock` on this writer's lock
file under `.local/`, set aside a torn tail left by a crashed writer, write the whole line with one
`write`, release the lock, then `fsync` — shared by every thread that appended meanwhile (group
commit) — before acknowledging.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import orjson

from .codec import MAX_SEQ, DecodeError, decode, now_ms
from .errors import StorageError, storage_error
from .layout import Layout

DURABILITY_MODES = ("durable", "fast")
_TAIL_CHUNK = 64 * 1024
# How far ahead of this machine's clock another event's ts may pull this writer's clock (the
# hybrid-logical clock, docs/storage.md "Clocks"): a clone with a wrong clock cannot drag every
# later snapshot into its future. Events beyond it are still read, and `verify` warns of them.
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000


class WouldBlock(Exception):
    """The writer lock is held by someone else right now (`blocking=False`)."""


class SyncThread:
    """One thread that fsyncs appends in batches for an asyncio server.

    The event loop writes lines itself (no thread convoy on the GIL around the writer lock) and
    `submit`s each append; this thread takes every append submitted so far, syncs each file
    once, closes them and calls their `done`. An append submitted during a sync waits for the
    next one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[Appended, Callable[[BaseException | None], None]]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.syncs = 0

    def submit(self, appended: Appended, done: Callable[[BaseException | None], None]) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sessionmem-sync", daemon=True
                )
                self._thread.start()
            self._queue.append((appended, done))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue and self._stopping:
                    return
                batch, self._queue = self._queue, []
            failure: BaseException | None = None
            try:
                seen: set[str] = set()
                for appended, _ in batch:
                    if appended.path not in seen:
                        seen.add(appended.path)
                        os.fsync(appended.fd)
                    for folder in appended.dirs:
                        _fsync_dir(Path(folder))
            except OSError as exc:
                failure = StorageError(f"Could not sync the log to disk: {exc}.")
            self.syncs += 1
            for appended, done in batch:
                with contextlib.suppress(OSError):
                    os.close(appended.fd)
                with contextlib.suppress(Exception):  # e.g. its event loop is closed by now
                    done(failure)


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
    fd: int = -1  # still open until the write is synced (`Appender.sync` / `SyncThread`)
    dirs: tuple[str, ...] = ()  # folders whose entries are new, synced with it


def lock_path(layout: Layout, user: str, writer: str) -> Path:
    return layout.locks / f"{user}~{writer}.lock"


def _fsync_dir(path: Path) -> None:
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
    """Appends events to log files; one per Store (it caches lock descriptors and folders).

    Lock files live in `.local/`, which git never touches, so their descriptors are kept open;
    log files are opened by path for every append (git replaces them on checkout). flock locks
    belong to an open file description, so threads of this process also take a threading lock.
    """

    def __init__(self, layout: Layout):
        self.layout = layout
        self.syncs = 0  # fsyncs made by `sync`; read by tests (threads' batches share one)
        self._locks: dict[tuple[str, str], tuple[threading.Lock, int]] = {}
        self._guard = threading.Lock()
        self._checked: dict[str, tuple[int, int]] = {}  # user folder -> (dev, ino) found real

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

    def append_many(
        self,
        user: str,
        writer: str,
        items: Sequence[tuple[Callable[[int, int], bytes], Callable[[], bool] | None]],
        *,
        min_ts_ms: int = 0,
        written: Callable[[int, Appended], None] | None = None,
        blocking: bool = True,
    ) -> list[Appended | BaseException | None]:
        """Append the lines `build(seq, ts_ms)` of several (build, precheck) items to
        `log/<user>/<writer>.jsonl` at once: one lock, one open and one `write` of all their
        lines (a group commit of whole appends), seqs in item order.

        `seq` is dense per writer file and `ts_ms` never goes behind the writer's last event
        nor below `min_ts_ms` (the newest event this process has seen from other writers, plus
        one). A `precheck` runs under the lock; when it returns True its item is not written
        (an idempotent retry found its first result). `written(i, appended)` runs under the
        lock just after the write (the store folds the lines there, in file order).

        Each item's result is its `Appended`, None (its precheck found it stored) or the
        exception its precheck or build raised — the others are written all the same. The
        write is not synced yet: every `Appended` of one call shares one open descriptor, for
        `sync` (or a `SyncThread`) to make durable and close, once. With `blocking=False`,
        raise `WouldBlock` rather than wait for the lock."""
        folder = os.path.join(self.layout.log, user)
        path = os.path.join(folder, f"{writer}.jsonl")
        try:
            return self._append_many(
                user, writer, items, folder, path, min_ts_ms, written, blocking
            )
        except OSError as exc:  # a lock file, a folder, a stat: the one storage error
            raise storage_error(f"append to {path}", exc) from exc

    def _append_many(
        self,
        user: str,
        writer: str,
        items: Sequence[tuple[Callable[[int, int], bytes], Callable[[], bool] | None]],
        folder: str,
        path: str,
        min_ts_ms: int,
        written: Callable[[int, Appended], None] | None,
        blocking: bool,
    ) -> list[Appended | BaseException | None]:
        new_dir = self._check_folders(folder)
        tlock, lock_fd = self._lock(user, writer)
        results: list[Appended | BaseException | None] = [None] * len(items)
        fd = -1
        if not tlock.acquire(blocking=blocking):
            raise WouldBlock(path)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WouldBlock(path) from None
            try:
                todo: list[tuple[int, Callable[[int, int], bytes]]] = []
                for i, (build, precheck) in enumerate(items):
                    try:
                        if precheck is None or not precheck():
                            todo.append((i, build))
                    except Exception as exc:  # this item only (e.g. Conflict)
                        results[i] = exc
                if not todo:
                    return results
                state = _read_state(lock_fd)
                try:
                    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
                except OSError as exc:
                    raise storage_error(f"append to {path}", exc) from exc
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    os.close(fd)
                    fd = -1
                    raise StorageError(f"Could not append to {path}: it is not a regular file.")
                size = st.st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    size = _set_aside_torn_tail(self.layout, fd, size, Path(path))
                seq, ts = state.get("seq", 0), state.get("ts", 0)
                if state.get("ino") != st.st_ino or state.get("size") != size:
                    file_seq, file_ts = last_event_mark(fd, size)
                    seq, ts = max(seq, file_seq), max(ts, file_ts)
                lines: list[tuple[int, bytes]] = []
                # Never behind what this writer and the others wrote, unless that is further
                # ahead of this machine's clock than the skew allows.
                clock = now_ms()
                ts = min(max(ts, min_ts_ms), clock + MAX_CLOCK_SKEW_MS)
                for i, build in todo:
                    now = max(now_ms(), ts)
                    if seq >= MAX_SEQ:
                        results[i] = StorageError(
                            f"Could not append to {path}: its seq reached {MAX_SEQ}; "
                            "give this clone a new writer id (delete .memory/.local/writer.json)."
                        )
                        continue
                    try:
                        lines.append((i, build(seq + 1, now)))
                    except Exception as exc:  # this item only
                        results[i] = exc
                        continue
                    seq, ts = seq + 1, now
                if not lines:
                    os.close(fd)
                    fd = -1
                    return results
                blob = lines[0][1] if len(lines) == 1 else b"".join(line for _, line in lines)
                error = _write_all(fd, blob)
                if error is not None:
                    # Disk full or a file size limit: leave no partial line behind.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    os.close(fd)
                    fd = -1
                    reason = os.strerror(error.errno) if error.errno else str(error)
                    if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                        reason += " (free some space, then retry: nothing was stored)"
                    failure = StorageError(f"Could not append to {path}: {reason}.")
                    failure.__cause__ = error
                    for i, _ in lines:
                        results[i] = failure
                    return results
                after = os.fstat(fd)
                folder_before, folder_mtime = touch_folder(folder)
                _write_state(
                    lock_fd, {"seq": seq, "ts": ts, "ino": st.st_ino, "size": size + len(blob)}
                )
                dirs = (
                    ((folder, os.path.dirname(folder)) if new_dir else (folder,))
                    if not size
                    else ()
                )
                offset = size
                for i, line in lines:
                    appended = Appended(
                        path,
                        offset,
                        line,
                        st.st_ino,
                        after.st_size,
                        after.st_mtime_ns,
                        after.st_ctime_ns,
                        folder_before,
                        folder_mtime,
                        fd,
                        dirs,
                    )
                    offset += len(line)
                    results[i] = appended
                    if written is not None:
                        written(i, appended)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                raise
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)  # the sync is outside it: group commit
        finally:
            tlock.release()
        return results

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
        """Make an append (a whole batch of lines) durable, then close it."""
        try:
            if durable:
                # One caller at a time: the thread batches' leader, for its whole batch.
                os.fsync(appended.fd)
                self.syncs += 1
                for folder in appended.dirs:
                    _fsync_dir(Path(folder))
        except OSError as exc:
            raise StorageError(f"Could not sync {appended.path} to disk: {exc}.") from exc
        finally:
            os.close(appended.fd)


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
