"""`sessionmem init --sync-branch` (docs/sync.md): this branch stops carrying memory — the logs
and erase records are ignored here and travel on the memory branch through `sessionmem sync`
instead, so they are never in `git status`, a diff or a pull request."""

from __future__ import annotations

from pathlib import Path

from .gitplumb import Git

IGNORED = ("log/", "erased/")


def use_sync_branch(folder: Path) -> list[str]:
    """Ignore `log/` and `erased/` in the memory folder's `.gitignore`, and take them out of the
    index if this branch tracked them (the files stay). Returns what to tell the user."""
    said: list[str] = []
    ignore = folder / ".gitignore"
    text = ignore.read_text(encoding="utf-8") if ignore.exists() else ""
    missing = [p for p in IGNORED if p not in text.splitlines()]
    if missing:
        if text and not text.endswith("\n"):
            text += "\n"
        text += "# memory travels on its own branch (`sessionmem sync`), not on this one\n"
        text += "".join(p + "\n" for p in missing)
        ignore.write_text(text, encoding="utf-8")
        said.append(f"{ignore} now ignores {', '.join(missing)}.")
    git = Git(folder)
    if git.git_dir() is None:
        said.append(f"{folder} is not in a git repository yet: `git init`, add a remote, then "
                    "`sessionmem sync`.")  # fmt: skip
        return said
    tracked = git.run("ls-files", "--", *[p.rstrip("/") for p in IGNORED], check=False)
    if tracked.stdout.strip():
        git.run("rm", "-r", "--cached", "--quiet", "--", *[p.rstrip("/") for p in IGNORED])
        said.append("Stopped tracking .memory/log/ and .memory/erased/ on this branch (the files "
                    "stay where they are): commit this change.")  # fmt: skip
    said.append("Memory now travels with `sessionmem sync` (to the remote's sessionmem branch); "
                "`sessionmem install AGENT --sync` syncs after every session.")  # fmt: skip
    return said
