"""Git's plumbing for `sessionmem sync` (docs/sync.md): objects, trees, commits and refs made
without a working tree, an index or a checkout — `hash-object`, `mktree`, `commit-tree`,
`update-ref`, `fetch`, `push` — so a sync never touches `HEAD`, a branch or a file outside the
memory folder.

Git never prompts here: no terminal prompt, no askpass, ssh in batch mode. A remote that wants a
password fails at once, and the failure is one line (`GitError`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from .errors import GitError

TIMEOUT = 120.0  # seconds for one git command (a fetch or push of a big first sync)
QUIET_ENV = {
    "GIT_TERMINAL_PROMPT": "0",  # never ask for a user name or password
    "GIT_ASKPASS": "true",  # an askpass that answers nothing
    "SSH_ASKPASS": "true",
    "GCM_INTERACTIVE": "never",  # Git Credential Manager
    "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh") + " -o BatchMode=yes",
    "LC_ALL": "C",  # messages we read are in English
}


class Entry(NamedTuple):
    mode: str
    kind: str  # "blob" or "tree"
    sha: str


def blob_sha(raw: bytes) -> str:
    """The object id git gives these bytes as a blob (SHA-1 repositories)."""
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw, usedforsecurity=False).hexdigest()


class Git:
    def __init__(self, cwd: Path):
        self.cwd = cwd

    def run(self, *args: str, input: bytes | None = None, check: bool = True,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        try:
            done = subprocess.run(
                ["git", *args], cwd=self.cwd, input=input, capture_output=True, timeout=timeout,
                env={**os.environ, **QUIET_ENV}, stdin=None if input is not None else
                subprocess.DEVNULL,
            )  # fmt: skip
        except FileNotFoundError:
            if not self.cwd.is_dir():
                raise GitError(f"There is no folder {self.cwd}.") from None
            raise GitError("git is not installed (sync uses it).") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} took longer than {timeout:.0f} s; try again.") from None
        if check and done.returncode != 0:
            raise GitError(f"git {args[0]} failed: {first_line(done.stderr)}")
        return done

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.decode().strip()

    def git_dir(self) -> Path | None:
        done = self.run("rev-parse", "--absolute-git-dir", check=False)
        return Path(done.stdout.decode().strip()) if done.returncode == 0 else None

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names, or None."""
        done = self.run("rev-parse", "--verify", "--quiet", ref + "^{commit}", check=False)
        return done.stdout.decode().strip() or None if done.returncode == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def tree_of(self, commit: str) -> str:
        return self.out("rev-parse", commit + "^{tree}")

    def files(self, commit: str | None) -> dict[str, Entry]:
        """Every file of a commit's tree: path -> its entry."""
        if commit is None:
            return {}
        raw = self.run("ls-tree", "-r", "-z", "--full-tree", commit).stdout
        found: dict[str, Entry] = {}
        for item in raw.split(b"\0"):
            if not item:
                continue
            meta, _, path = item.partition(b"\t")
            mode, kind, sha = meta.decode().split(" ")
            found[path.decode("utf-8", "surrogateescape")] = Entry(mode, kind, sha)
        return found

    def blobs(self, shas: list[str]) -> dict[str, bytes]:
        """The bytes of these blobs, in one `cat-file --batch`."""
        if not shas:
            return {}
        raw = self.run("cat-file", "--batch", input="".join(s + "\n" for s in shas).encode()).stdout
        found: dict[str, bytes] = {}
        at = 0
        for sha in shas:
            end = raw.index(b"\n", at)
            header = raw[at:end].split(b" ")
            if len(header) != 3:
                raise GitError(f"git cat-file: object {sha} is missing.")
            size = int(header[2])
            found[sha] = raw[end + 1 : end + 1 + size]
            at = end + 1 + size + 1
        return found

    def write_blobs(self, contents: list[bytes]) -> list[str]:
        """Store blobs (`hash-object -w`, one process each: a sync writes the few files that
        changed), returning their ids."""
        shas = []
        for raw in contents:
            sha = self.run("hash-object", "-w", "--stdin", "--no-filters",
                           input=raw).stdout.decode().strip()  # fmt: skip
            if sha != blob_sha(raw):
                raise GitError(f"git hash-object gave {sha}, not {blob_sha(raw)}.")
            shas.append(sha)
        return shas

    def write_tree(self, files: Mapping[str, str]) -> str:
        """A tree of `files` (path -> blob id, mode 100644): every folder's tree, deepest first,
        in one `mktree --batch`; returns the top tree's id."""
        if not files:  # (mktree --batch makes nothing of no entries)
            return self.out("hash-object", "-t", "tree", "-w", "--stdin")
        folders: dict[str, dict[str, tuple[str, str, str]]] = {"": {}}
        for path, sha in files.items():
            parts = path.split("/")
            for i in range(1, len(parts)):
                folders.setdefault("/".join(parts[:i]), {})
            folders["/".join(parts[:-1])][parts[-1]] = ("100644", "blob", sha)
        order = sorted(folders, key=lambda f: -(f.count("/") + 1) if f else 0)  # root last
        made: dict[str, str] = {}
        batch = []
        for folder in order:
            entries = folders[folder]
            for sub in made:
                if _parent(sub) == folder:
                    entries[sub.rsplit("/", 1)[-1]] = ("040000", "tree", made[sub])
            made[folder] = _tree_sha(entries)
            batch.append("".join(f"{m} {k} {s}\t{n}\n" for n, (m, k, s) in entries.items()))
        out = self.run("mktree", "--batch", input="\n".join(batch).encode()).stdout.decode()
        if out.split() != [made[f] for f in order]:
            raise GitError("git mktree made other trees than expected.")
        return made[""]

    def commit(self, tree: str, parents: list[str], message: str) -> str:
        """A commit, by the user's git identity — or "sessionmem" where git has none (a sync
        must not fail on a machine where nobody set user.email)."""
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        if self.run("var", "GIT_COMMITTER_IDENT", check=False).returncode != 0:
            args = ["-c", "user.name=sessionmem", "-c", "user.email=sessionmem@localhost", *args]
        return self.run(*args, input=message.encode()).stdout.decode().strip()

    def update_ref(self, ref: str, new: str, old: str | None) -> bool:
        """Move `ref` to `new` if it is still at `old` (None: does not exist yet)."""
        done = self.run("update-ref", ref, new, old or "0" * 40, check=False)
        return done.returncode == 0


def _parent(folder: str) -> str:
    return folder.rsplit("/", 1)[0] if "/" in folder else ""


def _tree_sha(entries: Mapping[str, tuple[str, str, str]]) -> str:
    """The id git gives a tree of these entries (ordered as git orders them: a folder's name
    sorts as if it ended in "/")."""
    body = b""
    for name in sorted(entries, key=lambda n: n + "/" if entries[n][1] == "tree" else n):
        mode, _kind, sha = entries[name]
        body += f"{mode.lstrip('0')} {name}".encode() + b"\0" + bytes.fromhex(sha)
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def first_line(stderr: bytes) -> str:
    """git's first meaningful line (a "fatal:" or "error:" line if there is one)."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("fatal:", "error:", "remote:", "ERROR")):
            return ln
    return lines[0] if lines else "no message"
