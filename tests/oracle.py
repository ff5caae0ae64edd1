"""An independent, naive reading of the logs: the oracle the store's projection must equal
(SPEC §3: the fold of the distinct events present, ordered by (ts, writer, seq))."""

from __future__ import annotations

from pathlib import Path

import orjson

from sessionmem import NotFound, Store


def reference(root: Path, user: str) -> dict[str, list[str]]:
    """session_id -> snapshot ids of its live history, oldest first."""
    events = {}
    for path in (root / "log" / user).glob("*.jsonl"):
        for line in path.read_bytes().split(b"\n")[:-1]:
            if not line.strip():
                continue
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            events.setdefault(ev["id"], ev)
    ordered = sorted(events.values(), key=lambda e: (e["ts"], e["writer"], e["seq"], e["id"]))
    sessions: dict[str, list[str]] = {}
    for ev in ordered:
        if ev["type"] == "delete":
            sessions[ev["session_id"]] = []
        else:
            sessions.setdefault(ev["session_id"], []).append(ev["id"])
    return {k: v for k, v in sessions.items() if v}


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


def _ts_of(store: Store, user: str, snapshot_id: str) -> tuple[str, str]:
    for path in (store.root / "log" / user).glob("*.jsonl"):
        for line in path.read_bytes().split(b"\n")[:-1]:
            if snapshot_id.encode() in line:
                ev = orjson.loads(line)
                return (ev["ts"], ev["writer"], ev["seq"])  # type: ignore[return-value]
    raise KeyError(snapshot_id)
