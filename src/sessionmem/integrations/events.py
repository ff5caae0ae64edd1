"""Cursor's per-event hooks (afterFileEdit, afterShellExecution): each file edit or shell
command is kept in `.memory/.local/events/<session>.jsonl` for the snapshot to take when there
is no transcript to read (docs/decisions.md, "Other agents"). What is kept passes through the
folder's redaction first ("Nothing derived holds more than the log")."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .record import masked

EVENTS_DIR = "events"


def events_file(root: Path, session_id: str) -> Path:
    session = "".join(c if c.isalnum() or c in "-_." else "-" for c in session_id)
    return root / ".local" / EVENTS_DIR / f"{session[:128] or 'unknown'}.jsonl"


def record_event(
    root: Path, session_id: str, event: str, payload: Mapping[str, Any], mask: Callable[[str], str]
) -> str | None:
    """Keep one event's file or command; a problem to log, or None."""
    if event == "afterFileEdit":
        entry = {"file": payload.get("file_path")}
    else:
        entry = {"command": payload.get("command")}
    if not isinstance(next(iter(entry.values())), str):
        return None
    try:
        path = events_file(root, session_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(masked(entry, mask)) + "\n")
    except OSError as exc:
        return f"could not record the {event} event: {exc}"
    return None


def recorded(root: Path, session_id: str, project: str) -> tuple[list[str], list[str]]:
    """(files relative to `project`, commands) the per-event hooks kept for this session."""
    files: dict[str, None] = {}
    commands: list[str] = []
    try:
        lines = events_file(root, session_id).read_text(encoding="utf-8").splitlines()
    except OSError:
        return [], []
    prefix = project.rstrip("/") + "/"
    for line in lines:
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("file"), str):
            path = entry["file"]
            files.setdefault(path[len(prefix) :] if path.startswith(prefix) else path, None)
        elif isinstance(entry.get("command"), str):
            commands.append(entry["command"])
    return list(files), commands
