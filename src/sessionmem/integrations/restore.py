"""What an agent gets back when a session starts: the best snapshot for its project, and the
briefing made of it. Shared by every agent's SessionStart hook and by `sessionmem latest
--format markdown`, so they can never differ."""

from __future__ import annotations

from typing import Any

from ..errors import SessionmemError
from ..memory import Memory
from ..model import Snapshot
from ..render import briefing
from .gitinfo import branch_and_commit, staleness

FOOTER = (
    "\n_Restored by sessionmem. Record decisions with "
    '`sessionmem save --merge --decision "..."`._\n'
)


def best_snapshot(
    memory: Memory,
    project: str,
    *,
    session_id: str | None = None,
    resumed: bool = False,
    parent: str | None = None,
    also: tuple[str, ...] = (),
) -> Snapshot | None:
    """This session's own snapshot when it resumes (after a compaction, `--resume`), else the
    latest of the session it continues (`parent`, named by its transcript), else the latest of
    this project on this branch, else of this project. `also` names other paths the project
    was recorded under by older versions (the working directory)."""
    for own, wanted in ((session_id, resumed), (parent, True)):
        if own and wanted:
            try:
                return memory.get(own)
            except SessionmemError:
                pass
    branch, _ = branch_and_commit(project)
    attempts: list[dict[str, Any]] = []
    for path in dict.fromkeys((project, *also)):
        if branch:
            attempts.append({"project_path": path, "git_branch": branch})
    attempts += [{"project_path": path} for path in dict.fromkeys((project, *also))]
    for filters in attempts:
        try:
            return memory.latest(**filters)
        except SessionmemError:
            continue
    return None


def restore_text(snap: Snapshot, project: str) -> str:
    """The Markdown briefing of `snap` for a session in `project` (with staleness warnings)."""
    return briefing(snap, warnings=staleness(snap.session_data, project)) + FOOTER
