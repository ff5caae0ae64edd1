"""What each page shows, worked out from the engine's answers (no HTML here: the templates
render it, autoescaped). Times are UTC, as everywhere in sessionmem."""

from __future__ import annotations

import re
import time
from typing import Any, NamedTuple

import orjson

from ..codec import LIST_FIELDS, dumps
from ..engine import Engine
from ..model import Diff, Snapshot
from ..render import clock

DAY_MS = 86_400_000
CHART_DAYS = 30
PAGE = 50  # sessions per page, and versions per page of a timeline

# The list fields, as the page names them (the order a person reads a snapshot in).
FIELD_NAMES = {
    "open_tasks": "Open tasks",
    "key_decisions": "Decisions",
    "files_modified": "Files",
    "commands_run": "Commands",
}
FIELD_ORDER = ("open_tasks", "key_decisions", "files_modified", "commands_run")
# How many of each, in words: (one, many).
FIELD_WORDS = {
    "open_tasks": ("open task", "open tasks"),
    "key_decisions": ("decision", "decisions"),
    "files_modified": ("file", "files"),
    "commands_run": ("command", "commands"),
}
assert set(FIELD_ORDER) == set(LIST_FIELDS)


def how_many(n: int, field: str) -> str:
    """3, "open_tasks" -> "3 open tasks"."""
    one, many = FIELD_WORDS[field]
    return f"{n} {one if n == 1 else many}"


class Version(NamedTuple):
    """One row of a session's timeline."""

    version: int
    snapshot_id: str
    created_at: str
    event: str
    agent: str | None
    branch: str | None
    commit: str | None
    counts: dict[str, int]
    compaction: int | None  # the compaction this snapshot follows (its number)
    parent: str | None  # the session this one continues
    shown_at: str  # `created_at` as the page shows it
    in_words: list[str]  # the counts as the page says them ("2 open tasks", ...)


def version_of(snap: Snapshot) -> Version:
    d = snap.session_data
    found = d.get("metadata")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    compaction = meta.get("compaction")
    count = compaction.get("count") if isinstance(compaction, dict) else None
    parent = meta.get("parent_session")
    counts = {name: len(d.get(name) or []) for name in FIELD_ORDER}
    return Version(
        snap.version,
        snap.snapshot_id,
        snap.created_at,
        snap.event,
        _text(meta.get("agent")),
        _text(d.get("git_branch")),
        _text(d.get("git_commit")),
        counts,
        count if isinstance(count, int) else (0 if snap.event == "pre_compact" else None),
        parent if isinstance(parent, str) and parent else None,
        clock(snap.created_at),
        [how_many(n, name) for name, n in counts.items()],
    )


def timeline(
    store: Engine, user: str, session_id: str, cursor: str | None
) -> tuple[list[Version], str | None, int]:
    """A page of a session's versions, newest first, the next page's cursor, and how many
    versions the session has."""
    page = store.history(user, session_id, limit=PAGE, cursor=cursor)
    items = [version_of(v) for v in store.versions(user, session_id,
                                                   [e.version for e in page.items])]  # fmt: skip
    if not items:
        total = 0
    elif cursor is None:
        total = items[0].version  # the first page starts at the newest
    else:
        total = store.get(user, session_id).version
    return items, page.next_cursor, total


class Changed(NamedTuple):
    field: str
    before: str
    after: str


class DiffView(NamedTuple):
    diff: Diff
    lists: list[tuple[str, list[Any], list[Any]]]  # (field's name, added, removed)
    changed: list[Changed]
    empty: bool  # nothing differs


def diff_view(diff: Diff) -> DiffView:
    lists = [
        (FIELD_NAMES[name], diff.added.get(name) or [], diff.removed.get(name) or [])
        for name in FIELD_ORDER
    ]
    changed = [
        Changed(name, _shown(c.get("from")), _shown(c.get("to")))
        for name, c in sorted(diff.changed.items())
    ]
    empty = not changed and not any(added or removed for _, added, removed in lists)
    return DiffView(diff, lists, changed, empty)


def item_text(item: Any) -> str:
    """A list item as the page shows it: a string as it is, anything else as JSON."""
    return item if isinstance(item, str) else _shown(item)


def extra_fields(snap: Snapshot) -> list[tuple[str, str]]:
    """The snapshot's fields besides the lists, as (name, text), metadata last."""
    d = snap.session_data
    names = [k for k in sorted(d) if k not in LIST_FIELDS and k != "metadata"]
    if "metadata" in d:
        names.append("metadata")
    return [(k, _shown(d[k])) for k in names]


def snippet_parts(snippet: str) -> list[tuple[str, bool]]:
    """A search snippet ("... [match] ...") as (text, is a match) parts."""
    parts: list[tuple[str, bool]] = []
    for piece in re.split(r"(\[[^\[\]]*\])", snippet):
        if not piece:
            continue
        if piece.startswith("[") and piece.endswith("]") and len(piece) > 2:
            parts.append((piece[1:-1], True))
        else:
            parts.append((piece, False))
    return parts


class Bar(NamedTuple):
    day: str
    saves: int
    x: int
    y: int
    height: int


class Chart(NamedTuple):
    bars: list[Bar]
    total: int
    peak: int
    width: int
    height: int


def chart(per_day: dict[int, int], now_ms: int | None = None) -> Chart:
    """Saves per day over the last CHART_DAYS days (UTC), as bars of an SVG."""
    today = (now_ms if now_ms is not None else int(time.time() * 1000)) // DAY_MS
    days = range(today - CHART_DAYS + 1, today + 1)
    counts = [per_day.get(d, 0) for d in days]
    peak = max(counts, default=0)
    width, height, step = CHART_DAYS * 12, 60, 12
    bars = []
    for i, (d, n) in enumerate(zip(days, counts, strict=True)):
        h = 0 if peak == 0 else max(2 if n else 0, round(n / peak * (height - 4)))
        day = time.strftime("%Y-%m-%d", time.gmtime(d * 86_400))
        bars.append(Bar(day, n, i * step + 1, height - h, h))
    return Chart(bars, sum(counts), peak, width, height)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return dumps(value).decode()
