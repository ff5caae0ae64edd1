"""Text renderings of snapshots: the restore briefing (Markdown) and plain text.

The briefing always fits in `limit` characters (Claude Code cuts SessionStart output over 10,000
to a preview): long lists are cut and say how many items were left out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .codec import ts_to_ms
from .model import Snapshot

BRIEFING_LIMIT = 9_500  # under the agent's 10,000 with room for its own framing


def relative_time(ts: str, now_ms: int | None = None) -> str:
    now = now_ms if now_ms is not None else int(datetime.now(tz=UTC).timestamp() * 1000)
    seconds = max(0, (now - ts_to_ms(ts)) // 1000)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def _section(
    title: str,
    items: list[str],
    budget: int,
    *,
    newest_last: bool = False,
    marked: frozenset[str] = frozenset(),
    paths: bool = False,
) -> str:
    if not items:
        return ""
    shown = list(items[-budget:] if newest_last else items[:budget])
    lines = [f"## {title}"]
    for x in shown:
        text = short_path(str(x)) if paths else _one_line(x)
        lines.append(f"- **(in progress)** {text}" if x in marked else f"- {text}")
    left = len(items) - len(shown)
    if left > 0:
        where = "earlier" if newest_last else "more"
        lines.append(f"- … and {left} {where} not shown")
    return "\n".join(lines) + "\n"


def _one_line(text: str, width: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def short_path(path: str, width: int = 120) -> str:
    """A long path shortened in its middle: its first folder and as many of its last parts as
    fit are kept, so the file's name always is."""
    flat = " ".join(path.split())
    if len(flat) <= width:
        return flat
    parts = flat.split("/")
    name = parts[-1]
    if len(name) >= width - 2:
        return "…" + name[-(width - 1) :]
    head = parts[0] + "/" if parts[0] else "/" + (parts[1] + "/" if len(parts) > 2 else "")
    tail = name
    for part in reversed(parts[1:-1] if parts[0] else parts[2:-1]):
        if len(head) + len(part) + len(tail) + 3 > width:
            break
        tail = f"{part}/{tail}"
    out = f"{head}…/{tail}"
    return out if len(out) <= width else "…/" + name


def briefing(
    snap: Snapshot,
    *,
    limit: int = BRIEFING_LIMIT,
    warnings: list[str] | None = None,
    now_ms: int | None = None,
) -> str:
    """A compact Markdown briefing: open tasks first, then decisions, files, recent commands."""
    d: dict[str, Any] = snap.session_data
    head = [
        f"# Session memory: {snap.session_id} (version {snap.version})",
        f"Saved {relative_time(snap.created_at, now_ms)} ({snap.created_at}) at {snap.event}.",
    ]
    where = []
    if d.get("project_path"):
        where.append(f"project `{d['project_path']}`")
    if d.get("git_branch"):
        where.append(f"branch `{d['git_branch']}`")
    if d.get("git_commit"):
        where.append(f"commit `{str(d['git_commit'])[:12]}`")
    if where:
        head.append("In " + ", ".join(where) + ".")
    meta: dict[str, Any] = d["metadata"] if isinstance(d.get("metadata"), dict) else {}
    head += _lineage(meta)
    for w in warnings or []:
        head.append(f"> Warning: {w}")
    head.append("")
    for title, name in (("Current work", "current_work"), ("Next step", "next_step")):
        if isinstance(d.get(name), str) and d[name].strip():
            head += [f"## {title}", _one_line(d[name], 1500), ""]
    doing: list[Any] = meta["in_progress"] if isinstance(meta.get("in_progress"), list) else []
    marked = frozenset(str(x) for x in doing)
    sections = [
        ("Open tasks", list(d.get("open_tasks") or []), False, marked, False),
        ("Key decisions", list(d.get("key_decisions") or []), False, frozenset(), False),
        ("Files modified", list(d.get("files_modified") or []), False, frozenset(), True),
        ("Recent commands", list(d.get("commands_run") or []), True, frozenset(), False),
    ]
    # Shrink the per-section item budget until the whole text fits.
    for budget in (50, 30, 20, 12, 8, 5, 3, 1, 0):
        parts = ["\n".join(head)]
        for title, items, newest_last, marked, paths in sections:
            if budget == 0 and items:
                parts.append(f"## {title}\n- {len(items)} items not shown\n")
            else:
                parts.append(
                    _section(
                        title, items, budget, newest_last=newest_last, marked=marked, paths=paths
                    )
                )
        text = "\n".join(p for p in parts if p).rstrip() + "\n"
        if len(text) <= limit:
            return text
    return text[: limit - 2] + "…\n"


def _lineage(meta: dict[str, Any]) -> list[str]:
    """Where this snapshot stands in its chain: the compaction it follows, the session it
    continues."""
    lines = []
    compaction = meta.get("compaction")
    if isinstance(compaction, dict) and isinstance(compaction.get("count"), int):
        n = compaction["count"]
        text = f"After compaction {n}" + (
            f" (at {compaction['at']})" if compaction.get("at") else ""
        )
        after = compaction.get("after")
        if isinstance(after, dict) and after.get("version"):
            text += f"; the snapshot saved just before it is version {after['version']}"
        lines.append(text + ".")
    parent = meta.get("parent_session")
    if isinstance(parent, str) and parent:
        lines.append(f"Continues session {parent} (`sessionmem show {parent}`).")
    return lines


def plain(snap: Snapshot) -> str:
    d = snap.session_data
    lines = [
        f"session   {snap.session_id}",
        f"version   {snap.version}",
        f"snapshot  {snap.snapshot_id}",
        f"event     {snap.event}",
        f"created   {snap.created_at}",
    ]
    for name in ("project_path", "git_branch", "git_commit"):
        if d.get(name):
            lines.append(f"{name.split('_')[-1]:<9} {d[name]}")
    for name in ("open_tasks", "key_decisions", "files_modified", "commands_run"):
        items = d.get(name) or []
        lines.append(f"{name} ({len(items)})")
        lines += [f"  - {_one_line(x)}" for x in items]
    return "\n".join(lines) + "\n"
