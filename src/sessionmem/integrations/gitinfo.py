"""What git says about a working tree: its branch and commit, and whether a snapshot is stale."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def _git(cwd: str, *args: str) -> str | None:
    # lazy: subprocess costs 4 ms at start-up
    import subprocess

    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def branch_and_commit(cwd: str) -> tuple[str | None, str | None]:
    """(branch, commit) of the repository at `cwd`; (None, None) outside one."""
    quick = _read_head(cwd)
    if quick is not None:
        return quick
    out = _git(cwd, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")  # one process, both answers
    if not out:
        return None, None
    parts = out.splitlines()
    if len(parts) != 2:
        return None, None
    branch = None if parts[1] == "HEAD" else parts[1]  # detached
    return branch, parts[0]


_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")


def _read_head(cwd: str) -> tuple[str | None, str | None] | None:
    """(branch, commit) read straight from `.git` for the plain cases — a branch whose ref is a
    loose file or in packed-refs, or a detached HEAD — without starting `git` (~3 ms, on every
    CLI save and hook). None for anything else (git then answers)."""
    here = Path(cwd).resolve()
    for folder in (here, *here.parents):
        dotgit = folder / ".git"
        if dotgit.is_dir():
            common = dotgit
            break
        if dotgit.is_file():  # a worktree or submodule: "gitdir: PATH"; git knows best
            return None
    else:
        return None
    try:
        head = (common / "HEAD").read_text().strip()
    except OSError:
        return None
    if _SHA.match(head):
        return None, head
    if not head.startswith("ref: refs/heads/"):
        return None
    ref = head[5:]
    branch = ref[len("refs/heads/") :]
    try:
        sha: str | None = (common / ref).read_text().strip()
    except FileNotFoundError:
        sha = _packed(common, ref)  # None: a branch with no commit yet
    except OSError:
        return None
    if sha is not None and not _SHA.match(sha):
        return None
    return branch, sha


def _packed(common: Path, ref: str) -> str | None:
    try:
        text = (common / "packed-refs").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _SHA.match(sha):
            return sha
    return None


def staleness(data: dict[str, Any], cwd: str) -> list[str]:
    """Why a snapshot may no longer describe the working tree."""
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
