"""What git's history still holds of lines `forget` and `prune` erased (docs/decisions.md,
"Forgetting"): the commits that added or removed them, and the `git filter-repo` command — with
its expressions file, event ids only — that would take them out. sessionmem never rewrites
history itself."""

from __future__ import annotations

import re
from pathlib import Path


def _git(root: Path, *args: str) -> str | None:
    # lazy: subprocess costs 3 ms at start-up (only a forget asks git)
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def committed_ids(root: Path, ids: list[str]) -> list[str]:
    """Commits (short hashes, at most 20) in which any of these events' lines were added or
    removed: the bytes are in git's history."""
    if not ids or _git(root, "rev-parse", "--git-dir") is None:
        return []
    found: list[str] = []
    for i in range(0, len(ids), 400):
        pattern = "|".join(re.escape(x) for x in ids[i : i + 400])
        out = _git(root, "log", "--all", "--format=%h", "-n", "20", "-E", "-G", pattern, "--", ".")
        found += [c for c in (out or "").split() if c not in found]
        if found:
            break
    return found[:20]


def filter_repo_hint(root: Path, record: str | None, ids: list[str]) -> str:
    """Write the expressions `git filter-repo --replace-text` needs (ids only) and say how to
    run it."""
    folder = root / ".local" / "forget"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record}.txt"
    path.write_text("".join(f'regex:(?m)^[^\\n]*"id":"{i}"[^\\n]*\\n==>\n' for i in ids))
    return (
        f"pip install git-filter-repo, then in a fresh clone of this repository: git filter-repo "
        f"--replace-text {path}  (it refuses a clone that is not fresh unless --force); then "
        "force-push, and every clone must fetch the rewrite or clone again: until then it still "
        "holds these lines"
    )
