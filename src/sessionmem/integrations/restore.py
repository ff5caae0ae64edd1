"""What an agent gets back when a session starts: the project view of its project (the snapshot
the briefing comes from, and what earlier sessions left open), and the briefing made of it.
Shared by every agent's SessionStart hook, `sessionmem brief`, `sessionmem latest --format
markdown` and MCP's `get_briefing`, so they can never differ."""

from __future__ import annotations

from ..memory import Memory
from ..project import ProjectView
from ..render import briefing
from .gitinfo import branch_and_commit, staleness

FOOTER = (
    "\n_Restored by sessionmem. Record decisions with "
    '`sessionmem save --merge --decision "..."`; close a task with `--done "..."`._\n'
)


def view_for(
    memory: Memory,
    project: str,
    *,
    branch: str | None = None,
    session_id: str | None = None,
    resumed: bool = False,
    parent: str | None = None,
    also: tuple[str, ...] = (),
    probe: bool = True,
) -> ProjectView:
    """The view of `project` for a session on its current branch. Its head is this session's
    own snapshot when it resumes (after a compaction, `--resume`), else that of the session it
    continues (`parent`, named by its transcript), else the newest that holds work on this
    branch, else in the project. `also` names other paths the project was recorded under by
    older versions (the working directory). `probe=False`: git is not asked for the branch
    (a path a client named on a shared server)."""
    if branch is None and probe:
        branch, _ = branch_and_commit(project)
    prefer = [session_id if resumed else None, parent]
    return memory.project(project, git_branch=branch, prefer=prefer, also=also)


def restore_text(view: ProjectView, project: str | None) -> str:
    """The Markdown briefing of `view` for a session in `project` (with staleness warnings);
    empty when nothing holds work."""
    if view.head is None:
        return ""
    warnings = staleness(view.head.session_data, project) if project else []
    return briefing(view.head, warnings=warnings, view=view) + FOOTER
