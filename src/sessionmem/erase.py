"""Erase records (docs/storage.md, "Erasure"): what `forget` and `prune` took out of the log,
said with ids and hashes only, so that no reader shows those lines again wherever they come back
from (a union merge, a clone that still has them, a branch made before).

A record is one line of `erased/<user>/<writer>.jsonl` (each clone appends only to its own file,
as with the log; `merge=union` covers one clone's branches):

    {"v": 1, "type": "erase", "id": UUID, "ts": TS, "user": U, "writer": W, "why": "forget",
     "lines": [[EVENT_ID, WRITER, SEQ, SHA256_OF_THE_LINE], ...],
     "session": SHA256_OF_THE_SESSION_ID, "until": TS,      (forget SESSION only)
     "text": SHA256_OF_THE_STRING}                          (forget --text only)

A line is erased when its id and the SHA-256 of its bytes (without a BOM or its line end) are
listed; with `session`, every event of that session from before `until` (the time of the forget)
is erased too, also those this clone never had. Nothing in a record is content: event ids are
random, the session id and the string are hashed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .codec import BOM, UUID_RE, dumps, id_hash, loads, ts_to_ms

ERASED_DIR = "erased"
WHY = ("forget", "forget-text", "prune")


def _sha256(raw: bytes) -> str:
    # lazy: hashlib costs 3 ms at start-up (a fold meets no erase record, mostly)
    import hashlib

    return hashlib.sha256(raw).hexdigest()


def line_hash(line: bytes) -> str:
    """The SHA-256 of a log line as a reader takes it: no BOM, no line end."""
    if line.startswith(BOM):
        line = line[3:]
    return _sha256(line.rstrip(b"\r\n"))


def session_hash(session_id: str) -> str:
    return _sha256(b"session\0" + session_id.encode())


def text_hash(text: str) -> str:
    return _sha256(b"text\0" + text.encode())


def folder(root: Path, user: str) -> Path:
    return root / ERASED_DIR / user


def folder_of(log_folder: Path) -> Path:
    """The erase folder beside a user's log folder (`log/<user>` -> `erased/<user>`)."""
    return log_folder.parent.parent / ERASED_DIR / log_folder.name


class Erased:
    """Every erase record of one user folded into what a reader must hide."""

    __slots__ = ("lines", "sessions", "seqs", "records", "digest", "_seen")

    def __init__(self) -> None:
        self.lines: dict[int, set[str]] = {}  # id hash -> SHA-256s of erased lines with that id
        self.sessions: dict[str, int] = {}  # session hash -> erased up to this ts (ms)
        self.seqs: set[tuple[str, int]] = set()  # (writer, seq) of erased lines, for `verify`
        self.records: list[str] = []  # the records' own ids
        self.digest = ""  # names this set: caches built under another one are not used
        self._seen: dict[str, int | None] = {}  # session id -> its `until`, once worked out

    def __bool__(self) -> bool:
        return bool(self.lines or self.sessions)

    def add(self, record: dict[str, Any]) -> None:
        for event_id, writer, seq, digest in record.get("lines", ()):
            self.lines.setdefault(id_hash(event_id), set()).add(digest)
            self.seqs.add((writer, seq))
        session = record.get("session")
        if isinstance(session, str):
            until = ts_to_ms(record["until"])
            self.sessions[session] = max(until, self.sessions.get(session, until))
        self.records.append(record["id"])

    def seal(self) -> Erased:
        self.digest = _sha256(" ".join(sorted(self.records)).encode()) if self.records else ""
        self._seen.clear()
        return self

    def hides(self, idh: int, line: bytes, session_id: str, ts_ms: int) -> bool:
        """Whether the event on `line` (its id hash, session and time given) is erased."""
        digests = self.lines.get(idh)
        if digests is not None and line_hash(line) in digests:
            return True
        if not self.sessions:
            return False
        until = self._seen.get(session_id, -1)
        if until == -1:
            until = self._seen[session_id] = self.sessions.get(session_hash(session_id))
        return until is not None and ts_ms < until


def stamp(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a user's erase folder: a new record moves its mtime (`append`)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns) if stat.S_ISDIR(st.st_mode) else None


def load(path: Path) -> Erased:
    """The erase records in `path` (a user's erase folder). A damaged line, a link, a file not
    named `*.jsonl` is passed over (`verify` names it): a record is only ever more to hide."""
    erased = Erased()
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return erased.seal()
    for entry in entries:
        if not entry.name.endswith(".jsonl") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            with open(entry.path, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        for line in raw.splitlines():
            record = parse(line)
            if record is not None:
                erased.add(record)
    return erased.seal()


def parse(line: bytes) -> dict[str, Any] | None:
    """A record, checked; None for anything else."""
    try:
        record = loads(line.removeprefix(BOM))
        ok = (
            isinstance(record, dict)
            and record.get("v") == 1
            and record.get("type") == "erase"
            and isinstance(record.get("id"), str)
            and UUID_RE.match(record["id"]) is not None
            and all(
                isinstance(item, list)
                and len(item) == 4
                and isinstance(item[0], str)
                and UUID_RE.match(item[0]) is not None
                and isinstance(item[1], str)
                and type(item[2]) is int
                and isinstance(item[3], str)
                and len(item[3]) == 64
                for item in record.get("lines", ())
            )
            and isinstance(record.get("lines", []), list)
        )
        if ok and "session" in record:
            ok = isinstance(record["session"], str) and isinstance(record.get("until"), str)
            ts_to_ms(record["until"])
    except (ValueError, TypeError, KeyError):
        return None
    return record if ok else None


def encode(record: dict[str, Any]) -> bytes:
    return dumps(record) + b"\n"
