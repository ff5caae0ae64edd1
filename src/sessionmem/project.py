"""The project view: what a new session of a project should know, over all of its sessions — the
snapshot the briefing comes from, and the open tasks and decisions that earlier sessions left
and no later one closed (docs/decisions.md, "The briefing").

It is a read over `Memory` (sessions, get, history), so it means the same on a memory folder and
on a server, for the hooks, the CLI's `brief`, MCP's `get_briefing`, `GET /project` and the web
page. The rules:

- A snapshot *holds work* when it has files, commands, decisions, open or closed tasks, or a
  hand-over (current work, next step). The user's words alone are not work: a session of plain
  chat never becomes the one a briefing comes from.
- The *head* is the newest snapshot that holds work: of the preferred sessions first (the one
  resumed, the one continued), then of the project on this branch, then of the project. A
  session whose latest version holds nothing is looked at through its last versions.
- Items *carry forward*: the project's sessions (the newest `MAX_SESSIONS`) are folded oldest
  first; each one's open tasks and decisions are added, and the items its `closed_tasks` name
  are removed (a todo marked done, a task gone from a list that replaced it, `save --done`, MCP
  `done`). Items match by their text, whitespace and case aside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import SessionmemError

if TYPE_CHECKING:  # (not imported at run time: the hooks load this module for `holds_work`)
    from .memory import Memory
    from .model import Snapshot

# What makes a snapshot worth a briefing (and a hook's save worth storing).
WORK_FIELDS = (
    "files_modified",
    "commands_run",
    "key_decisions",
    "open_tasks",
    "closed_tasks",
    "current_work",
    "next_step",
)
MAX_SESSIONS = 30  # the project's newest sessions folded into the view
LOOK_BACK = 10  # versions of a session looked through for one that holds work


def holds_work(data: Mapping[str, Any]) -> bool:
    return any(data.get(name) for name in WORK_FIELDS)


class Item(NamedTuple):
    """An open task or a decision, with the snapshot that last stated it."""

    text: str
    session_id: str
    version: int
    created_at: str
    git_branch: str | None
    in_progress: bool = False

    def view(self) -> dict[str, Any]:
        return self._asdict()


class ProjectView(NamedTuple):
    project_path: str | None
    git_branch: str | None
    head: Snapshot | None  # the snapshot the briefing comes from; None: nothing holds work
    open_tasks: list[Item]  # the head session's own first, then the carried ones, newest first
    key_decisions: list[Item]
    sessions_read: int

    def view(self) -> dict[str, Any]:
        return {
            "project_path": self.project_path,
            "git_branch": self.git_branch,
            "head": self.head.view() if self.head is not None else None,
            "open_tasks": [i.view() for i in self.open_tasks],
            "key_decisions": [i.view() for i in self.key_decisions],
            "sessions_read": self.sessions_read,
        }

    @classmethod
    def from_view(cls, raw: Mapping[str, Any]) -> ProjectView:
        # lazy: .model costs 14 ms at start-up
        from .model import Snapshot

        head = raw.get("head")
        return cls(
            raw.get("project_path"),
            raw.get("git_branch"),
            Snapshot.from_view(head) if isinstance(head, Mapping) else None,
            [Item(**i) for i in raw.get("open_tasks") or []],
            [Item(**i) for i in raw.get("key_decisions") or []],
            int(raw.get("sessions_read") or 0),
        )

    def carried(self, items: list[Item]) -> list[Item]:
        """The items that came from other sessions than the head's."""
        head = self.head.session_id if self.head is not None else None
        return [i for i in items if i.session_id != head]


def project_view(
    memory: Memory,
    project_path: str | None = None,
    *,
    git_branch: str | None = None,
    prefer: Iterable[str | None] = (),
    also: Iterable[str] = (),
) -> ProjectView:
    """The view of `project_path` (every project of the user when None) for a session on
    `git_branch`. `prefer` names sessions whose snapshot is the head when it holds work;
    `also` names other paths the project was recorded under (a working directory)."""
    paths = list(dict.fromkeys([project_path, *also])) if project_path else [None]
    found: dict[str, Any] = {}
    for path in paths:
        for item in memory.sessions(project_path=path, limit=MAX_SESSIONS).items:
            found.setdefault(item.session_id, item)
    newest = sorted(found.values(), key=lambda s: s.created_at, reverse=True)[:MAX_SESSIONS]
    snaps = [s for s in (_with_work(memory, x.session_id) for x in newest) if s is not None]
    head = None
    for sid in prefer:
        if sid:
            head = _with_work(memory, sid)
            if head is not None:
                break
    if head is None and git_branch:
        head = next((s for s in snaps if s.session_data.get("git_branch") == git_branch), None)
    if head is None and snaps:
        head = snaps[0]
    if head is not None and all(s.session_id != head.session_id for s in snaps):
        snaps.insert(0, head)
    tasks, decisions = _carry(reversed(snaps))
    head_sid = head.session_id if head is not None else None
    return ProjectView(
        project_path,
        git_branch,
        head,
        _head_first(tasks, head_sid),
        _head_first(decisions, head_sid),
        len(snaps),
    )


def _with_work(memory: Memory, session_id: str) -> Snapshot | None:
    """The session's newest snapshot that holds work (its last LOOK_BACK versions)."""
    try:
        snap = memory.get(session_id)
        if holds_work(snap.session_data):
            return snap
        for entry in memory.history(session_id, limit=LOOK_BACK).items[1:]:
            if any(entry.counts.values()):
                older = memory.get(session_id, version=entry.version)
                if holds_work(older.session_data):
                    return older
    except SessionmemError:  # deleted meanwhile
        pass
    return None


def key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _carry(snaps: Iterable[Snapshot]) -> tuple[dict[str, Item], dict[str, Item]]:
    """Fold snapshots, oldest first: each adds its open tasks and decisions (moving an item
    stated again to the newest place) and removes what it closed."""
    tasks: dict[str, Item] = {}
    decisions: dict[str, Item] = {}
    for snap in snaps:
        data = snap.session_data
        for text in _strings(data.get("closed_tasks")):
            tasks.pop(key(text), None)
            decisions.pop(key(text), None)
        meta = _dict(data.get("metadata"))
        doing = {key(t) for t in _strings(meta.get("in_progress"))}
        branch = data.get("git_branch") if isinstance(data.get("git_branch"), str) else None
        for target, name in ((tasks, "open_tasks"), (decisions, "key_decisions")):
            for text in _strings(data.get(name)):
                k = key(text)
                target.pop(k, None)
                target[k] = Item(
                    text,
                    snap.session_id,
                    snap.version,
                    snap.created_at,
                    branch,
                    name == "open_tasks" and k in doing,
                )
    return tasks, decisions


def _head_first(items: dict[str, Item], head: str | None) -> list[Item]:
    own = [i for i in items.values() if i.session_id == head]
    others = [i for i in items.values() if i.session_id != head]
    others.sort(key=lambda i: i.created_at, reverse=True)
    return own + others


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    return [x for x in value if isinstance(x, str)] if isinstance(value, list) else []
