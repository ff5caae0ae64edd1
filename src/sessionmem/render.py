"""Text renderings of snapshots: the restore briefing (Markdown) and plain text.

The briefing always fits in `limit` characters (Claude Code cuts SessionStart output over 10,000
to a preview): long lists are cut and say how many items were left out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .codec import ts_to_ms
from .model import Snapshot

if TYPE_CHECKING:
    from .project import ProjectView

BRIEFING_LIMIT = 9_500  # under the agent's 10,000 with room for its own framing


def relative_time(ts: str, now_ms: int | None = None) -> str:
    now = now_ms if now_ms is not None else int(datetime.now(tz=UTC).timestamp() * 1000)
    seconds = max(0, (now - ts_to_ms(ts)) // 1000)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


MAX_BRIEF_COMMANDS = 10  # the most recent distinct commands a briefing shows
MAX_CARRIED = 15  # items from earlier sessions a briefing shows


def safe(text: str) -> str:
    """`text` for a terminal or a prompt: control characters (ESC, BEL, NUL, C1...) written as
    `\\x1b`, so stored text can never move a cursor, set a title or write a clipboard. Stored
    snapshots and `--json` keep the exact text."""
    if text.isprintable():
        return text
    return "".join(
        c
        if c.isprintable() or c in "\n\t"
        else f"\\x{ord(c):02x}"
        if ord(c) < 256
        else f"\\u{ord(c):04x}"
        for c in text
    )


def _section(
    title: str,
    items: list[str],
    budget: int,
    *,
    newest_last: bool = False,
    marked: frozenset[str] = frozenset(),
    paths: bool = False,
    notes: list[str] | None = None,
    note: str = "",
    of: int | None = None,
) -> str:
    if not items:
        return ""
    shown = list(items[-budget:] if newest_last else items[:budget])
    lines = [f"## {title}"] + ([f"_{note}_"] if note else [])
    for n, x in enumerate(shown):
        text = short_path(str(x)) if paths else _one_line(x)
        extra = ""
        if notes is not None:
            extra = f" — _{notes[n]}_"
        lines.append(f"- **(in progress)** {text}{extra}" if x in marked else f"- {text}{extra}")
    left = (of if of is not None else len(items)) - len(shown)
    if left > 0:
        where = "earlier" if newest_last else "more"
        lines.append(f"- … and {left} {where} not shown")
    return "\n".join(lines) + "\n"


def _one_line(text: str, width: int = 300) -> str:
    flat = safe(" ".join(str(text).split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def short_path(path: str, width: int = 120) -> str:
    """A long path shortened in its middle: its first folder and as many of its last parts as
    fit are kept, so the file's name always is."""
    flat = safe(" ".join(path.split()))
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


def recent_commands(commands: list[Any], n: int = MAX_BRIEF_COMMANDS) -> list[str]:
    """The `n` most recent distinct commands, oldest first."""
    out: dict[str, None] = {}
    for c in reversed(commands):
        if isinstance(c, str) and c not in out:
            out[c] = None
            if len(out) == n:
                break
    return list(reversed(out))


def relative_to(path: str, project: Any) -> str:
    if isinstance(project, str) and project and path.startswith(project.rstrip("/") + "/"):
        return path[len(project.rstrip("/")) + 1 :]
    return path


def clock(ts: Any) -> str:
    """`2026-11-30T16:13:05.123Z` → `2026-11-30 16:13 UTC`."""
    if isinstance(ts, str) and len(ts) >= 16 and ts[10:11] == "T":
        return f"{ts[:10]} {ts[11:16]} UTC"
    return safe(str(ts))


def _after(stated: Any) -> str:
    """When a part was stated and what the session did after it."""
    if not isinstance(stated, dict):
        return ""
    where = {
        "todo": "the todo list",
        "tasks": "the task list",
        "plan": "the plan",
        "summary": "the compaction summary",
    }.get(str(stated.get("source")), "the transcript")
    text = f"Stated in {where}"
    if stated.get("at"):
        text += f" at {clock(stated['at'])}"
    after: dict[str, Any] = stated["after"] if isinstance(stated.get("after"), dict) else {}
    done = [
        f"{after[k]} {word}{'s' if after[k] != 1 else ''}"
        for k, word in (("turns", "turn"), ("commands", "command"), ("commits", "commit"))
        if isinstance(after.get(k), int) and after[k] > 0
    ]
    if done:
        text += "; the session went on for " + ", ".join(done) + " after it: check it still holds"
    return text + "."


def _attribution(item: Any, branch: str | None, now_ms: int | None) -> str:
    text = f"left by session {item.session_id}, {relative_time(item.created_at, now_ms)}"
    if item.git_branch and branch and item.git_branch != branch:
        text += f", on branch `{safe(item.git_branch)}`"
    return text


def briefing(
    snap: Snapshot,
    *,
    limit: int = BRIEFING_LIMIT,
    warnings: list[str] | None = None,
    now_ms: int | None = None,
    view: ProjectView | None = None,
) -> str:
    """A compact Markdown briefing (docs/decisions.md, "The briefing"): what the user asked,
    the hand-over, open tasks, decisions, files and the last distinct commands of `snap`; with
    a project `view`, the tasks and decisions earlier sessions left open too. Each part says
    when it was stated and what happened after it."""
    d: dict[str, Any] = snap.session_data
    meta: dict[str, Any] = d["metadata"] if isinstance(d.get("metadata"), dict) else {}
    agent = f" by {safe(meta['agent'])}" if isinstance(meta.get("agent"), str) else ""
    head = [
        f"# Session memory: {snap.session_id} (version {snap.version})",
        f"Saved {relative_time(snap.created_at, now_ms)} ({clock(snap.created_at)}) at "
        f"{snap.event}{agent}.",
    ]
    where = []
    project = d.get("project_path")
    branch = d.get("git_branch") if isinstance(d.get("git_branch"), str) else None
    if project:
        where.append(f"project `{safe(str(project))}`")
    if branch:
        where.append(f"branch `{safe(branch)}`")
    if d.get("git_commit"):
        where.append(f"commit `{safe(str(d['git_commit'])[:12])}`")
    if where:
        head.append("In " + ", ".join(where) + ".")
    head += _lineage(meta)
    for w in warnings or []:
        head.append(f"> Warning: {safe(w)}")
    head.append("")
    requests = [r for r in d.get("requests") or [] if isinstance(r, str)]
    title = meta.get("title") if isinstance(meta.get("title"), str) else None
    if requests or title:
        head.append("## What the user asked")
        if title:
            head.append(f"Title: {_one_line(title)}")
        for n, r in enumerate(requests):
            label = "First" if n == 0 and len(requests) > 1 else "Then" if n else "Asked"
            head.append(f"- {label}: {_one_line(r)}")
        head.append("")
    stated: dict[str, Any] = meta["stated"] if isinstance(meta.get("stated"), dict) else {}
    handover_note = _after(stated.get("handover")) if stated.get("handover") else ""
    for title_, name in (("Current work", "current_work"), ("Next step", "next_step")):
        if isinstance(d.get(name), str) and d[name].strip():
            head += [f"## {title_}", _one_line(d[name], 1500)]
            if handover_note and name == "current_work":
                head.append(f"_{handover_note}_")
            head.append("")
    doing: list[Any] = meta["in_progress"] if isinstance(meta.get("in_progress"), list) else []
    marked = frozenset(str(x) for x in doing)
    tasks_note = _after(stated.get("open_tasks")) if stated.get("open_tasks") else ""
    carried_tasks = view.carried(view.open_tasks)[:MAX_CARRIED] if view else []
    carried_decisions = view.carried(view.key_decisions)[:MAX_CARRIED] if view else []
    all_carried_tasks = len(view.carried(view.open_tasks)) if view else 0
    all_carried_decisions = len(view.carried(view.key_decisions)) if view else 0
    files = [relative_to(str(f), project) for f in d.get("files_modified") or []]
    commands = list(d.get("commands_run") or [])
    recent = recent_commands(commands)
    sections: list[tuple[str, list[str], dict[str, Any]]] = [
        ("Open tasks", list(d.get("open_tasks") or []), {"marked": marked, "note": tasks_note}),
        (
            "Still open from earlier sessions",
            [i.text for i in carried_tasks],
            {
                "notes": [_attribution(i, branch, now_ms) for i in carried_tasks],
                "marked": frozenset(),
                "of": all_carried_tasks,
            },
        ),
        ("Key decisions", list(d.get("key_decisions") or []), {}),
        (
            "Decisions of earlier sessions",
            [i.text for i in carried_decisions],
            {
                "notes": [_attribution(i, branch, now_ms) for i in carried_decisions],
                "of": all_carried_decisions,
            },
        ),
        ("Files modified", files, {"paths": True}),
        (
            f"Recent commands (the last {len(recent)} distinct of {len(commands)})"
            if len(commands) > len(recent)
            else "Recent commands",
            recent,
            {"newest_last": True},
        ),
    ]
    # Shrink the per-section item budget until the whole text fits.
    for budget in (50, 30, 20, 12, 8, 5, 3, 1, 0):
        parts = ["\n".join(head)]
        for title_, items, kw in sections:
            if budget == 0 and items:
                parts.append(f"## {title_}\n- {len(items)} items not shown\n")
            else:
                parts.append(_section(title_, items, budget, **kw))
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
            f" (at {clock(compaction['at'])})" if compaction.get("at") else ""
        )
        after = compaction.get("after")
        if isinstance(after, dict) and after.get("version"):
            text += f"; the snapshot saved just before it is version {after['version']}"
        lines.append(text + ".")
    parent = meta.get("parent_session")
    if isinstance(parent, str) and parent:
        lines.append(f"Continues session {safe(parent)} (`sessionmem show {safe(parent)}`).")
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
            lines.append(f"{name.split('_')[-1]:<9} {safe(str(d[name]))}")
    for name in ("open_tasks", "key_decisions", "files_modified", "commands_run"):
        items = d.get(name) or []
        lines.append(f"{name} ({len(items)})")
        lines += [f"  - {_one_line(x)}" for x in items]
    return "\n".join(lines) + "\n"
