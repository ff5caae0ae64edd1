"""Has a log file changed since it was folded, and how? The checks the fold (and the projection
cache) make before they trust what they folded (docs/storage.md, "Reading": when a file is
re-read)."""

from __future__ import annotations

import errno
import os
import stat
import zlib
from pathlib import Path

from .errors import StorageError
from .log import tail_lines
from .rows import Part


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
PASSING = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EIO, errno.EAGAIN, errno.EINTR}


def unreadable(path: Path, exc: OSError) -> StorageError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StorageError(f"Could not read {path}: {reason}. Nothing was changed; retry shortly.")


def real_dir(path: Path) -> bool:
    """Is `path` a directory itself, not a link to one?"""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def appended(part: Part, st: os.stat_result) -> bool:
    """Could the file `st` describes be the part's file with lines appended? (Then its last
    folded line is checked too: `_holds_last`.) An append always grows a file; one that
    changed without growing was edited in place."""
    if (st.st_dev, st.st_ino) != (part.dev, part.ino) or st.st_size < part.consumed:
        return False
    if st.st_size > part.seen_size:
        return True
    return st.st_mtime_ns == part.seen_mtime and st.st_ctime_ns == part.seen_ctime


def holds_last(fd: int, part: Part) -> bool:
    """Does the file still hold the last line folded from it, whole and at the same place?"""
    if not part.consumed:
        return True
    off, want = part.last_off, part.last
    if off:
        off, want = off - 1, b"\n" + want  # and a line starts there
    return bool(want) and os.pread(fd, len(want), off) == want


def remember_last(fd: int, part: Part) -> None:
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
