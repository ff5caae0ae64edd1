"""What changed between two snapshots of a session (docs/http.md: `GET /session/{id}/diff`).

List fields are compared as multisets in order: an item present in both is neither added nor
removed wherever it moved; a repeated item counts as often as it appears. Every other field is
compared whole and reported under `changed` as `{"from": …, "to": …}`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .codec import LIST_FIELDS, dumps
from .model import Diff, Snapshot


def list_changes(old: list[Any], new: list[Any]) -> tuple[list[Any], list[Any]]:
    """(added, removed), each in the order the items appear in its own list."""
    remaining_old = Counter(_hashable(x) for x in old)
    added = []
    for item in new:
        h = _hashable(item)
        if remaining_old[h] > 0:
            remaining_old[h] -= 1
        else:
            added.append(item)
    remaining_new = Counter(_hashable(x) for x in new)
    removed = []
    for item in old:
        h = _hashable(item)
        if remaining_new[h] > 0:
            remaining_new[h] -= 1
        else:
            removed.append(item)
    return added, removed


def diff_data(older: Snapshot, newer: Snapshot) -> Diff:
    a, b = older.session_data, newer.session_data
    added: dict[str, list[Any]] = {}
    removed: dict[str, list[Any]] = {}
    for name in LIST_FIELDS:
        added[name], removed[name] = list_changes(list(a.get(name) or []), list(b.get(name) or []))
    changed: dict[str, dict[str, Any]] = {}
    for name in sorted(set(a) | set(b)):
        if name in LIST_FIELDS:
            continue
        if a.get(name) != b.get(name):
            changed[name] = {"from": a.get(name), "to": b.get(name)}
    return Diff(
        session_id=newer.session_id,
        from_version=older.version,
        to_version=newer.version,
        from_snapshot_id=older.snapshot_id,
        to_snapshot_id=newer.snapshot_id,
        from_created_at=older.created_at,
        to_created_at=newer.created_at,
        added=added,
        removed=removed,
        changed=changed,
    )


def _hashable(item: Any) -> Any:
    if isinstance(item, str | int | float | bool) or item is None:
        return item

    return ("json", dumps(item))
