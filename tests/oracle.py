"""An independent, naive reading of the logs: the oracle the store's projection must equal
(docs/storage.md, "Reading": the fold of the distinct events present, ordered by (ts, writer,
seq))."""

from __future__ import annotations

from pathlib import Path

from sessionmem import NotFound, Store
from sessionmem.codec import DecodeError, decode


def reference(root: Path, user: str) -> dict[str, list[str]]:
    """session_id -> snapshot ids of its live history, oldest first."""
    ordered = sorted(
        events_of(root, user).values(), key=lambda e: (e["ts"], e["writer"], e["seq"], e["id"])
    )
    sessions: dict[str, list[str]] = {}
    for ev in ordered:
        if ev["type"] == "delete":
            sessions[ev["session_id"]] = []
        else:
            sessions.setdefault(ev["session_id"], []).append(ev["id"])
    return {k: v for k, v in sessions.items() if v}


def events_of(root: Path, user: str) -> dict[str, dict]:
    """The distinct events of a user's folder by id. Lines are read one by one with the codec's
    decoder (the one rule book for a line), from regular files only."""
    events: dict[str, dict] = {}
    folder = root / "log" / user
    if folder.is_symlink():
        return {}
    for path in sorted(folder.glob("*.jsonl")):
        if path.is_symlink() or not path.is_file():
            continue
        for line in path.read_bytes().split(b"\n")[:-1]:
            if not line.strip():
                continue
            try:
                ev = decode(line)
            except DecodeError:
                continue
            if ev.user != user:
                continue
            events.setdefault(ev.id, {"id": ev.id, "ts": ev.ts, "writer": ev.writer,
                                      "seq": ev.seq, "type": ev.type,
                                      "session_id": ev.session_id})  # fmt: skip
    return events


def projected(store: Store, user: str) -> dict[str, list[str]]:
    out = {}
    for s in store.sessions(user, limit=1000).items:
        items = store.history(user, s.session_id, limit=1000).items
        out[s.session_id] = [e.snapshot_id for e in reversed(items)]
    return out


def assert_matches(store: Store, user: str) -> dict[str, list[str]]:
    expected = reference(store.root, user)
    assert projected(store, user) == expected
    if expected:
        newest = max(expected, key=lambda s: _ts_of(store, user, expected[s][-1]))
        assert store.latest(user).session_id == newest
    else:
        try:
            store.latest(user)
        except NotFound:
            pass
        else:
            raise AssertionError("latest found a snapshot the oracle does not have")
    return expected


def _ts_of(store: Store, user: str, snapshot_id: str) -> tuple[str, str, int]:
    ev = events_of(store.root, user)[snapshot_id]
    return (ev["ts"], ev["writer"], ev["seq"])
