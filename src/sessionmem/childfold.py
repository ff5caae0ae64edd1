"""The cold fold of a big log shared with a child process: two cores, two halves. The child folds
the second half of the file into a fresh view and hands its rows back through an unnamed
temporary file; this process folds the first half meanwhile, then appends the child's rows in its
own numbering. Any trouble with the child and the caller folds the rest itself, as usual."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from array import array
from collections.abc import Callable
from typing import Any

from .rows import FoldResult, Part, Rows, intern

_CHILD_ENV = "SESSIONMEM_FOLD_CHILD"
_CHILD_CODE = "from sessionmem.fold import fold_child; fold_child()"
# `fold.fold_lines` and `fold.fold_range`, handed in by `fold` (which calls this module: taking
# them as arguments keeps the import graph a tree).
FoldLines = Callable[[Rows, Part, int, FoldResult, int], None]
FoldRange = Callable[[str, str, str, int, int], dict[str, Any]]


def fold_in_halves(
    view: Rows,
    part: Part,
    fd: int,
    size: int,
    result: FoldResult,
    fold_lines: FoldLines,
    fold_range: FoldRange,
) -> None:
    """A big cold fold on a machine with several cores: a child process folds the second
    half of the file while this one folds the first; then its rows are appended. Any
    trouble with the child and the caller folds the rest itself, as usual.

    A process with one thread (the CLI, a hook, a script) forks: the child starts at once.
    With other threads running (a server), forking could copy a lock some thread holds, so
    the child is a plain `python -c` subprocess instead — not multiprocessing, whose
    spawning would import the caller's main script again in the child."""
    # lazy, ms at start-up: pickle 2, subprocess 3, tempfile 3
    import pickle
    import subprocess
    import tempfile

    if (os.cpu_count() or 1) < 2 or os.environ.get(_CHILD_ENV):
        return
    forking = can_fork()
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
            child = _fork_child(view, part, split, size, out_fd, fold_range)
        else:
            args = [str(view.folder), view.user, part.path.name, str(split), str(size)]
            env = {**os.environ, _CHILD_ENV: "1", "PYTHONPATH": os.pathsep.join(sys.path)}
            try:
                child = subprocess.Popen(
                    [sys.executable, "-c", _CHILD_CODE, *args, str(out_fd)],
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
            fold_lines(view, part, fd, result, split)
            if _finished(child) and part.consumed == split:
                out.seek(0)
                got = pickle.loads(out.read())  # our own child's answer, not repository data
                merge_range(view, part, got, result)
        except Exception:  # noqa: BLE001 - the child's half is simply folded here instead
            _stop(child)


def _fork_child(
    view: Rows, part: Part, split: int, size: int, out_fd: int, fold_range: FoldRange
) -> int | None:
    """Fork a child that folds [split, size) into `out_fd`; its pid, or None."""
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child: fold the second half, write it down, and leave at once
        code = 1
        try:
            write_rows(fold_range(str(view.folder), view.user, part.path.name, split, size), out_fd)
            code = 0
        finally:
            os._exit(code)
    return pid


def merge_range(view: Rows, part: Part, got: dict[str, Any], result: FoldResult) -> None:
    """Append the rows a `fold_range` child folded, in this view's numbering."""
    smap = [intern(view.session_index, view.session_names, n) for n in got["sessions"]]
    wmap = [intern(view.writer_index, view.writer_names, n) for n in got["writers"]]
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
        view.histories.pop(sidx, None)
        result.touched.add(sidx)
    for csidx, (ts, writer, seq, idh, row, kind) in got["heads"].items():
        key = (ts, writer, seq, idh)
        head = view.heads.get(smap[csidx])
        if head is None or key > head[0]:
            view.heads[smap[csidx]] = (key, base | (row0 + row), kind)
    for key, row in got["idem"].items():
        view.idem.setdefault(key, base | (row0 + row))
    for writer, ts in got["max_ts"].items():
        if ts > part.max_ts.get(writer, -1):
            part.max_ts[writer] = ts
    for offset, reason in got["problems"]:
        part.report(offset, reason)
    part.problem_count += got["problem_count"] - len(got["problems"])
    part.hidden += got["hidden"]
    part.consumed = got["consumed"]
    view.latest = None


def can_fork() -> bool:
    """Only a process with one thread forks its fold child (see `fold_in_halves`)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def write_rows(got: dict[str, Any], out_fd: int) -> None:
    # lazy: pickle costs 2 ms at start-up
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
