"""`sessionmem sync` (docs/sync.md): this clone's memory logs and erase records travel on a
branch of their own, through git's plumbing only — never the working tree outside `.memory/`,
the index, `HEAD` or a local branch.

One sync, under a lock of this clone:
1. the files of `.memory/log/` and `.memory/erased/` (complete lines only) are merged with the
   last synced commit (`refs/sessionmem/<branch>`) and committed on it when anything changed;
2. the remote's branch is fetched into `refs/sessionmem/remotes/<remote>/<branch>` and merged:
   the union of the files; a file on both sides is the longer where one is a prefix of the other,
   else the union of their lines (as `merge=union`); then every line an erase record hides is
   dropped, so a forgotten session leaves every clone that syncs;
3. the result is pushed to the remote's `refs/heads/<branch>`; refused because someone pushed
   first, it fetches, merges and tries again (`ATTEMPTS`), then says so;
4. the merged files are written into `.memory/`, each atomically, under its writer's lock, merged
   once more with what the file holds by then (a save made meanwhile is never overwritten).

A sync killed anywhere leaves readable logs: files are only replaced whole, and the local ref
moves only to a commit that holds every line this clone had.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from . import erase
from .codec import DecodeError, decode, dumps, id_hash, loads, ms_to_ts, now_ms
from .errors import FieldError, InvalidInput, SyncError
from .gitplumb import Entry, Git, blob_sha, first_line
from .log import fsync_dir, touch_folder
from .names import USER_RE, WRITER_RE

if TYPE_CHECKING:
    from .store import Store

REMOTE, BRANCH = "origin", "sessionmem"
ATTEMPTS = 5  # pushes refused because another clone pushed first
FOLDERS = ("log", "erased")
PATH_RE = re.compile(r"^(log|erased)/([^/]+)/([^/]+)\.jsonl$")
BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,100}(?<![./])$")


class Synced(NamedTuple):
    commit: str
    sent: int  # events the remote did not have
    received: int  # events this clone did not have
    written: list[str]  # files written into .memory/
    attempts: int
    pushed: bool


def refs(remote: str, branch: str) -> tuple[str, str]:
    """(this clone's synced ref, the fetched remote ref): both outside refs/heads/."""
    return f"refs/sessionmem/{branch}", f"refs/sessionmem/remotes/{remote}/{branch}"


def check_names(remote: str, branch: str) -> None:
    if not re.match(r"^[A-Za-z0-9._-]{1,100}$", remote) or remote.startswith("-"):
        raise InvalidInput(FieldError("remote", "must be a git remote's name (git remote -v)."))
    if not BRANCH_RE.match(branch):
        raise InvalidInput(FieldError("branch", "must be a plain branch name (letters, digits, "
                                                "., _, -, /)."))  # fmt: skip


def git_for(store: Store, remote: str) -> Git:
    git = Git(store.root)
    if not store.root.is_dir():
        raise SyncError(f"No memory folder at {store.root}.")
    if git.git_dir() is None:
        raise SyncError(f"{store.root} is not in a git repository: sync travels through git.")
    if git.run("remote", "get-url", remote, check=False).returncode != 0:
        raise SyncError(f"This repository has no remote {remote!r} (`git remote -v` lists them; "
                        "--remote names another).")  # fmt: skip
    return git


# --- the files ----------------------------------------------------------------------------------


def local_files(root: Path) -> dict[str, bytes]:
    """`log/` and `erased/` files of the memory folder: path -> its complete lines."""
    found: dict[str, bytes] = {}
    for top in FOLDERS:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for user in os.scandir(root / top):
                if not user.is_dir(follow_symlinks=False) or not USER_RE.match(user.name):
                    continue
                for f in os.scandir(user.path):
                    path = f"{top}/{user.name}/{f.name}"
                    if _accepted(path) and f.is_file(follow_symlinks=False):
                        with open(f.path, "rb") as fh:
                            raw = fh.read()
                        found[path] = raw[: raw.rfind(b"\n") + 1]
    return found


def _accepted(path: str) -> bool:
    """A path a sync reads or writes: `log|erased/<user>/<writer>.jsonl`, names by the rules."""
    m = PATH_RE.match(path)
    return bool(m and USER_RE.match(m.group(2)) and WRITER_RE.match(m.group(3)))


def union(a: bytes, b: bytes) -> bytes:
    """Two versions of a file: the longer where one is a prefix of the other, else `a`'s lines
    and then `b`'s lines that `a` lacks (in `b`'s order)."""
    if a.startswith(b):
        return a
    if b.startswith(a):
        return b
    have = set(lines(a))
    extra = [ln for ln in lines(b) if ln not in have]
    return a + b"".join(ln if ln.endswith(b"\n") else ln + b"\n" for ln in extra)


def lines(raw: bytes) -> list[bytes]:
    """The lines of a log file, each with its newline (only "\\n" ends a line in JSONL)."""
    parts = raw.split(b"\n")
    out = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


class Tree:
    """A tree's files as git knows them (path -> blob id), with bytes loaded when needed."""

    def __init__(
        self,
        git: Git,
        entries: Mapping[str, Entry | str],
        data: dict[str, bytes],
        *,
        in_git: bool = True,
    ):
        self.git = git
        self.in_git = in_git  # False: the memory folder's files, not stored in git yet
        self.shas = {p: e.sha if isinstance(e, Entry) else e for p, e in entries.items()
                     if _accepted(p)}  # fmt: skip
        self.data = data  # bytes already known (sha -> bytes)

    def read(self, paths: list[str]) -> dict[str, bytes]:
        missing = [self.shas[p] for p in paths if self.shas[p] not in self.data]
        self.data.update(self.git.blobs(sorted(set(missing))))
        return {p: self.data[self.shas[p]] for p in paths}


def merge(a: Tree, b: Tree) -> dict[str, bytes | str]:
    """The union of two trees (path -> bytes, or the blob id when one side's blob is kept), with
    every line an erase record hides dropped."""
    out: dict[str, bytes | str] = {}
    both = [p for p in a.shas.keys() & b.shas.keys() if a.shas[p] != b.shas[p]]
    for p in a.shas.keys() | b.shas.keys():
        if p not in both:
            side = a if p in a.shas else b
            out[p] = side.shas[p] if side.in_git else side.data[side.shas[p]]
    left, right = a.read(both), b.read(both)
    for p in both:
        out[p] = union(left[p], right[p])
    for value in out.values():
        if isinstance(value, bytes):
            a.data.setdefault(blob_sha(value), value)
    return drop_erased(out, Tree(a.git, {}, a.data if a.data is b.data else {**a.data, **b.data}))


def drop_erased(files: dict[str, bytes | str], store: Tree) -> dict[str, bytes | str]:
    """`files` without the lines the erase records among them hide."""
    users = {m.group(2) for p in files if (m := PATH_RE.match(p)) and m.group(1) == "erased"}
    for user in users:
        erased = erase.Erased()
        for p in [p for p in files if p.startswith(f"erased/{user}/")]:
            for line in lines(_bytes(files[p], store)):
                record = erase.parse(line)
                if record is not None:
                    erased.add(record)
        if not erased.seal():
            continue
        for p in [p for p in files if p.startswith(f"log/{user}/")]:
            raw = _bytes(files[p], store)
            kept = [ln for ln in lines(raw) if not _hidden(erased, ln)]
            if sum(map(len, kept)) != len(raw):
                files[p] = b"".join(kept)
    return files


def _hidden(erased: erase.Erased, line: bytes) -> bool:
    try:
        ev = decode(line)
    except DecodeError:
        return False  # (not an event: kept as it is; `verify` names it)
    return erased.hides(id_hash(ev.id), line, ev.session_id, ev.ts_ms)


def _bytes(value: bytes | str, store: Tree) -> bytes:
    if isinstance(value, bytes):
        return value
    if value not in store.data:
        store.data.update(store.git.blobs([value]))
    return store.data[value]


def write_tree(git: Git, files: dict[str, bytes | str]) -> str:
    contents = {p: v for p, v in files.items() if isinstance(v, bytes)}
    shas = dict(zip(contents, git.write_blobs(list(contents.values())), strict=True))
    return git.write_tree({p: shas.get(p) or str(v) for p, v in files.items()})


# --- one sync -----------------------------------------------------------------------------------


def sync(store: Store, remote: str = REMOTE, branch: str = BRANCH) -> Synced:
    check_names(remote, branch)
    git = git_for(store, remote)
    mine, theirs = refs(remote, branch)
    with _sync_lock(store.root):
        prev = git.resolve(mine)
        here = local_files(store.root)
        known = {blob_sha(raw): raw for raw in here.values()}  # every blob's bytes seen: read once
        base = Tree(git, git.files(prev), known)
        current = Tree(git, {p: blob_sha(raw) for p, raw in here.items()}, known,
                       in_git=False)  # fmt: skip
        files = merge(current, base)
        tree = write_tree(git, files)
        local = prev
        if prev is None or git.tree_of(prev) != tree:
            local = git.commit(tree, [prev] if prev else [], _message(store, "save"))
        assert local is not None
        attempts, sent, received = 0, 0, 0
        while True:
            attempts += 1
            fetched = _fetch(git, remote, branch, theirs)
            top, sent, received = _merged(git, store, local, fetched, known)
            if top == fetched:
                break  # the remote has it all already
            pushed = git.run("push", "--porcelain", "--no-verify", remote,
                             f"{top}:refs/heads/{branch}", check=False)  # fmt: skip
            if pushed.returncode == 0:
                git.run("update-ref", theirs, top)
                break
            if not _refused_as_behind(pushed.stdout + pushed.stderr):
                raise SyncError(
                    f"git push to {remote!r} failed: {first_line(pushed.stderr)} "
                    f"Nothing was lost: this clone's memory is kept in {mine}."
                )
            if attempts >= ATTEMPTS:
                raise SyncError(f"The remote's {branch} branch kept moving ({attempts} tries); "
                                "nothing was lost: run `sessionmem sync` again.")  # fmt: skip
            local = top
            time.sleep(random.uniform(0.05, 0.2 * attempts))
        if not git.update_ref(mine, top, prev):
            git.run("update-ref", mine, top)
        written = write_back(store, Tree(git, git.files(top), known))
        _remember(store.root, remote, branch, top)
        return Synced(top, sent, received, written, attempts, top != fetched)


def _fetch(git: Git, remote: str, branch: str, theirs: str) -> str | None:
    done = git.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", remote,
                   f"+refs/heads/{branch}:{theirs}", check=False)  # fmt: skip
    if done.returncode == 0:
        return git.resolve(theirs)
    text = done.stderr.decode("utf-8", "replace")
    if "couldn't find remote ref" in text or "could not find remote ref" in text:
        return None  # the first sync of this remote: nothing there yet
    raise SyncError(
        f"Could not fetch from {remote!r}: {first_line(done.stderr)} Nothing was "
        "lost: this clone's memory stays here and goes with the next sync."
    )


def _merged(
    git: Git, store: Store, local: str, fetched: str | None, known: dict[str, bytes]
) -> tuple[str, int, int]:
    """The commit to push (and the events it sends and receives)."""
    if fetched is None or fetched == local or git.is_ancestor(fetched, local):
        sent, _ = _count(git, local, fetched, known)
        return local, sent, 0
    sent, received = _count(git, local, fetched, known)
    if git.is_ancestor(local, fetched):
        return fetched, 0, received
    files = merge(Tree(git, git.files(local), known), Tree(git, git.files(fetched), known))
    merged = git.commit(write_tree(git, files), [local, fetched], _message(store, "merge"))
    return merged, sent, received


def _count(git: Git, mine: str, theirs: str | None, known: dict[str, bytes]) -> tuple[int, int]:
    """Events (lines of log files) in `mine` and not in `theirs`, and the other way."""
    a = Tree(git, git.files(mine), known)
    b = Tree(git, git.files(theirs), known)
    paths = sorted(p for p in a.shas.keys() | b.shas.keys() if p.startswith("log/")
                   and a.shas.get(p) != b.shas.get(p))  # fmt: skip
    ours = a.read([p for p in paths if p in a.shas])
    other = b.read([p for p in paths if p in b.shas])
    sent = received = 0
    for p in paths:
        x = set(lines(ours.get(p, b"")))
        y = set(lines(other.get(p, b"")))
        sent += len(x - y)
        received += len(y - x)
    return sent, received


def _refused_as_behind(output: bytes) -> bool:
    text = output.decode("utf-8", "replace")
    return any(w in text for w in ("non-fast-forward", "fetch first", "[rejected]",
                                   "failed to update ref", "cannot lock ref"))  # fmt: skip


def write_back(store: Store, tree: Tree) -> list[str]:
    """Write the synced files into the memory folder: each under its writer's lock, merged with
    what the file holds by then, replaced atomically; returns the paths written."""
    here = local_files(store.root)
    changed = [p for p, sha in tree.shas.items() if blob_sha(here.get(p, b"")) != sha
               or p not in here]  # fmt: skip
    written: list[str] = []
    appender = store._writer.appender
    touched: set[Path] = set()
    for p in sorted(changed):
        top, user, writer = PATH_RE.match(p).groups()  # type: ignore[union-attr]
        new = tree.read([p])[p]
        folder = store.root / top / user
        with appender.locked(user, writer):
            path = folder / f"{writer}.jsonl"
            try:
                with open(path, "rb") as fh:
                    now = fh.read()
            except FileNotFoundError:
                now = b""
            if now and not now.endswith(b"\n"):
                continue  # a torn tail: the next append sets it aside, the next sync writes
            result = union(now, new)
            if top == "log" and result != new:  # lines of ours the merge dropped as erased
                records: dict[str, bytes | str] = {
                    q: v for q, v in tree.shas.items() if q.startswith(f"erased/{user}/")
                }
                result = _bytes(drop_erased({p: result, **records}, tree)[p], tree)
            if result == now:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{writer}.jsonl.sync"
            with open(tmp, "wb") as fh:
                fh.write(result)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            touch_folder(str(folder))
            touched.add(folder)
            written.append(p)
    for folder in touched:
        fsync_dir(folder)
    return written


@contextlib.contextmanager
def _sync_lock(root: Path) -> Iterator[None]:
    """One sync at a time per clone (a second waits up to a minute, then says so)."""
    locks = root / ".local" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / "sync.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SyncError("Another sync of this clone has been running for a minute; "
                                    "try again when it ends.") from None  # fmt: skip
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _message(store: Store, what: str) -> str:
    return f"sessionmem sync: {what} from {store.writer} at {ms_to_ts(now_ms())}\n"


# --- what `sync --status` says ------------------------------------------------------------------


def _remember(root: Path, remote: str, branch: str, commit: str) -> None:
    path = root / ".local" / "sync.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(dumps({"at": ms_to_ts(now_ms()), "remote": remote, "branch": branch,
                           "commit": commit}))  # fmt: skip
    os.replace(tmp, path)


class Status(NamedTuple):
    only_here: int
    only_there: int
    last: dict[str, str] | None  # the last sync: at, remote, branch, commit
    remote_has_branch: bool


def status(store: Store, remote: str = REMOTE, branch: str = BRANCH) -> Status:
    """Events only in this clone's files, only on the remote's branch (fetched now), and the last
    sync."""
    check_names(remote, branch)
    git = git_for(store, remote)
    _mine, theirs = refs(remote, branch)
    fetched = _fetch(git, remote, branch, theirs)
    here = local_files(store.root)
    there = Tree(git, git.files(fetched), {})
    logs = sorted(p for p in there.shas if p.startswith("log/"))
    remote_files = there.read([p for p in logs if there.shas[p] != blob_sha(here.get(p, b""))])
    only_here = only_there = 0
    for p in sorted({*remote_files, *(p for p in here if p.startswith("log/"))}):
        if p not in remote_files and p in there.shas:
            continue  # the same bytes on both sides
        x = set(lines(here.get(p, b"")))
        y = set(lines(remote_files.get(p, b"")))
        only_here += len(x - y)
        only_there += len(y - x)
    try:
        last = loads((store.root / ".local" / "sync.json").read_bytes())
    except (OSError, ValueError):
        last = None
    return Status(only_here, only_there, last, fetched is not None)
