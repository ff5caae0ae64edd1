"""What git says about a working tree: its branch and commit, and whether a snapshot is stale."""

from __future__ import annotations

import subprocess
from typing import Any


def _git(cwd: str, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def branch_and_commit(cwd: str) -> tuple[str | None, str | None]:
    """(branch, commit) of the repository at `cwd`; (None, None) outside one."""
    out = _git(cwd, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")  # one process, both answers
    if not out:
        return None, None
    parts = out.splitlines()
    if len(parts) != 2:
        return None, None
    branch = None if parts[1] == "HEAD" else parts[1]  # detached
    return branch, parts[0]


def staleness(data: dict[str, Any], cwd: str) -> list[str]:
    """Why a snapshot may no longer describe the working tree (issue 5)."""
    warnings: list[str] = []
    branch, commit = branch_and_commit(cwd)
    then_branch = data.get("git_branch")
    if branch and then_branch and branch != then_branch:
        warnings.append(f"recorded on branch `{then_branch}`; you are on `{branch}`.")
    then_commit = data.get("git_commit")
    # Paths are relative to the project root (absolute ones lie outside it: git cannot say).
    files = [
        f for f in data.get("files_modified") or [] if isinstance(f, str) and not f.startswith("/")
    ][:200]
    if commit and isinstance(then_commit, str) and then_commit and then_commit != commit:
        if _git(cwd, "cat-file", "-e", f"{then_commit}^{{commit}}") is None:
            warnings.append(f"its commit `{then_commit[:12]}` is not in this repository.")
        elif files:
            changed = _git(cwd, "diff", "--name-only", then_commit, commit, "--", *files)
            if changed:
                names = changed.splitlines()
                shown = ", ".join(f"`{n}`" for n in names[:5])
                more = f" and {len(names) - 5} more" if len(names) > 5 else ""
                warnings.append(f"files it lists changed in commits since: {shown}{more}.")
    return warnings
