"""What a hook starts and leaves running (docs/sync.md): `sessionmem sync` after a session, in
its own process group with no terminal and git told never to prompt, so it never blocks or breaks
the agent; its outcome is a line of `hooks.log` (`append_log`)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path


def start_sync(root: Path, *, every: float = 0) -> str | None:
    """Start `sessionmem sync --from-hook` for the memory folder `root`, unless one started less
    than `every` seconds ago; returns what to log (None: nothing started)."""
    stamp = root / ".local" / "sync-started"
    if every:
        with contextlib.suppress(OSError):
            if time.time() - stamp.stat().st_mtime < every:
                return None
    with contextlib.suppress(OSError):
        stamp.touch()
    # lazy: subprocess costs 3 ms at start-up (a hook that saves nothing never starts one)
    import subprocess

    try:
        subprocess.Popen(
            [sys.executable, "-m", "sessionmem", "sync", "--root", str(root), "--from-hook"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )  # fmt: skip
    except OSError as exc:
        return f"sync could not start: {exc}"
    return "sync started in the background"


def append_log(path: Path, event: str, message: str) -> None:
    """One line of hooks.log (never raises: a log is not worth failing a hook for)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{now_text()} {event} {message}\n")
    except OSError:
        pass


def now_text() -> str:
    """The time as the logs write it (the codec's format, without importing the codec)."""
    ns = time.time_ns()
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 10**6 % 1000:03d}Z"
    )
