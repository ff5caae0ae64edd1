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


def _section(title: str, items: list[str], budget: int, *, newest_last: bool = False) -> str:
    if not items:
        return ""
    shown = list(items[-budget:] if newest_last else items[:budget])
    lines = [f"## {title}"]
    lines += [f"- {_one_line(x)}" for x in shown]
    left = len(items) - len(shown)
    if left > 0:
        where = "earlier" if newest_last else "more"
        lines.append(f"- … and {left} {where} not shown")
    return "\n".join(lines) + "\n"


def _one_line(text: str, width: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


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
    for w in warnings or []:
        head.append(f"> Warning: {w}")
    head.append("")
    sections = [
        ("Open tasks", list(d.get("open_tasks") or []), False),
        ("Key decisions", list(d.get("key_decisions") or []), False),
        ("Files modified", list(d.get("files_modified") or []), False),
        ("Recent commands", list(d.get("commands_run") or []), True),
    ]
    # Shrink the per-section item budget until the whole text fits.
    for budget in (50, 30, 20, 12, 8, 5, 3, 1, 0):
        parts = ["\n".join(head)]
        for title, items, newest_last in sections:
            if budget == 0 and items:
                parts.append(f"## {title}\n- {len(items)} items not shown\n")
            else:
                parts.append(_section(title, items, budget, newest_last=newest_last))
        text = "\n".join(p for p in parts if p).rstrip() + "\n"
        if len(text) <= limit:
            return text
    return text[: limit - 2] + "…\n"


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
