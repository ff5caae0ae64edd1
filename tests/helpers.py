"""Helpers the tests share: real git in temporary repositories, and what a client can read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sessionmem import NotFound, Store
from sessionmem.codec import Event, encode, ms_to_ts, uuid7
from sessionmem.layout import Layout

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV, "HOME": str(cwd)},
    )
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stdout}{out.stderr}"
    return out.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    Layout(path / ".memory").ensure()
    commit_all(path, "init memory")
    return path


def state(store: Store, user: str = "alice") -> dict:
    """Everything a client can read, as plain data."""
    out: dict = {"sessions": [], "latest": None}
    page = store.sessions(user, limit=1000)
    for s in page.items:
        hist = store.history(user, s.session_id, limit=1000).items
        out["sessions"].append(
            (
                s.session_id,
                [
                    (
                        h.version,
                        h.snapshot_id,
                        store.get(user, s.session_id, version=h.version).open_tasks,
                    )
                    for h in hist
                ],
            )
        )
    try:
        out["latest"] = store.latest(user).snapshot_id
    except NotFound:  # nothing stored: any other error fails the test
        out["latest"] = None
    return out


BASE_MS = 1_790_000_000_000


def ev(
    session: str,
    writer: str,
    seq: int,
    ms: int,
    tasks: list[str],
    kind: str = "snapshot",
    user: str = "alice",
) -> bytes:
    data = (
        {}
        if kind == "delete"
        else {
            "project_path": None,
            "files_modified": [],
            "commands_run": [],
            "key_decisions": [],
            "open_tasks": tasks,
            "event": "checkpoint",
        }
    )
    return encode(
        Event(
            id=uuid7(ms),
            type=kind,
            user=user,
            session_id=session,
            writer=writer,
            seq=seq,
            ts=ms_to_ts(ms),
            data=data,
        )
    )


def write_logs(root: Path, files: dict[str, list[bytes]]) -> None:
    folder = root / "log" / "alice"
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (folder / f"{name}.jsonl").write_bytes(b"".join(lines))
