"""Where things live in a memory folder (docs/storage.md), and how it is found and set up."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
from pathlib import Path

from .errors import FieldError, InvalidInput, StorageError
from .names import USER_RE, WRITER_RE

ROOT_ENV = "SESSIONMEM_ROOT"

README_TEXT = """\
# .memory — session memory for coding agents

This folder is written by [sessionmem](https://pypi.org/project/sessionmem/). It holds snapshots of
coding agents' working state (files modified, commands run, decisions, open tasks), saved before the
agent's context is compacted, at session end, or at a checkpoint, so the next session can pick up
where the last one stopped.

- `log/<user>/<writer>.jsonl` — the source of truth. One JSON event per line, append-only, never
  rewritten. Each clone of the repository (or each server data directory) writes its own file, so
  merges between clones never touch the same file; `.gitattributes` makes git union-merge the rest.
- `.local/` — machine-local and derived (writer id, API key hashes, locks, caches). Never committed.

Read it with `sessionmem sessions`, `sessionmem history SESSION`, `sessionmem show SESSION`;
check it with `sessionmem verify`.
"""
ERASED_ATTRIBUTES = "erased/**/*.jsonl text eol=lf merge=union\n"
GITATTRIBUTES_TEXT = "log/**/*.jsonl text eol=lf merge=union\n" + ERASED_ATTRIBUTES
GITIGNORE_TEXT = ".local/\n"
SCAFFOLD = {
    "README.md": README_TEXT,
    ".gitattributes": GITATTRIBUTES_TEXT,
    ".gitignore": GITIGNORE_TEXT,
}


def find_root(start: Path | None = None) -> Path:
    """SESSIONMEM_ROOT, else the nearest `.memory/` upward from `start` (like git finds `.git`),
    else the git top level's `.memory/` (where `init` would make it), else `./.memory`."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ".memory"
        if _is_dir(candidate):
            return candidate
    return project_root(here) / ".memory"


def existing_root(start: Path) -> Path | None:
    """SESSIONMEM_ROOT, else the nearest `.memory/` upward from `start` that exists; None when
    there is none (the hooks then keep memory in `user_store()`: docs/decisions.md, "Where the
    hooks write")."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env)
    here = start.resolve()
    for folder in (here, *here.parents):
        if _is_dir(folder / ".memory"):
            return folder / ".memory"
    return None


def user_store() -> Path:
    """The per-user memory folder for projects without a `.memory/`: SESSIONMEM_HOME, else
    `$XDG_DATA_HOME/sessionmem`, else `~/.local/share/sessionmem`. Never inside a working tree
    the user did not opt in."""
    env = os.environ.get("SESSIONMEM_HOME")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data) if data and os.path.isabs(data) else Path.home() / ".local" / "share"
    return base / "sessionmem"


def _is_dir(path: Path) -> bool:
    """`path.is_dir()`, but a folder we may not look into is not ours (no PermissionError)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def project_root(start: Path) -> Path:
    """ "This project": the git top level of `start` (the nearest folder upward holding `.git`,
    a folder or a worktree's file), else the nearest folder upward holding a `.memory/`, else
    `start` itself. Hooks and the CLI record it as a snapshot's `project_path`, so each finds
    what the other saved."""
    here = Path(start).resolve()
    chain = (here, *here.parents)
    for folder in chain:
        with contextlib.suppress(OSError):
            if (folder / ".git").exists():
                return folder
    for folder in chain:
        if _is_dir(folder / ".memory"):
            return folder
    return here


def check_user(user: str) -> str:
    if not isinstance(user, str) or not USER_RE.match(user):
        raise InvalidInput(
            FieldError(
                "user",
                f"{user!r} is not a valid user id: use 1-128 characters from A-Z a-z 0-9 . _ @ -, "
                "starting with a letter or digit.",
            )
        )
    return user


def sanitize_user(raw: str) -> str:
    """Turn an e-mail address or OS login into a valid user id."""
    cleaned = re.sub(r"[^A-Za-z0-9._@-]", "-", raw.strip())
    cleaned = cleaned.lstrip("._@-")[:128]
    return cleaned or "user"


def default_user(explicit: str | None = None, cwd: Path | None = None) -> str:
    """`--user`, else SESSIONMEM_USER, else git's user.email, else the OS user."""
    if explicit:
        return check_user(explicit)
    env = os.environ.get("SESSIONMEM_USER")
    if env:
        return check_user(env)
    # lazy: subprocess costs 4 ms at start-up
    import subprocess

    try:
        out = subprocess.run(
            ["git", "config", "user.email"],
            capture_output=True,
            text=True,
            timeout=2,
            cwd=cwd,
        )
        if out.returncode == 0 and out.stdout.strip():
            return sanitize_user(out.stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return sanitize_user(getpass.getuser())
    except Exception:  # getpass raises a variety of errors with no login name
        return "user"


class Layout:
    """Paths inside one memory root. Creating it touches nothing on disk."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.log = self.root / "log"
        self.local = self.root / ".local"
        self.locks = self.local / "locks"
        self.quarantine = self.local / "quarantine"
        self.keys = self.local / "keys.json"
        self.writer_file = self.local / "writer.json"
        # The session the agent's SessionStart hook recorded last (`save --merge`, MCP default).
        self.current_session_file = self.local / "current-session.json"

    def user_dir(self, user: str) -> Path:
        return self.log / check_user(user)

    def current_session(self) -> str | None:
        """The session the SessionStart hook recorded last in this memory folder, if any."""
        try:
            record = json.loads(self.current_session_file.read_bytes())
        except (OSError, ValueError):
            return None
        value = record.get("session_id") if isinstance(record, dict) else None
        return value if isinstance(value, str) else None

    def ensure(self) -> list[str]:
        """Create the folder and its scaffolding; repair what is missing. Returns what it made."""
        made = []
        for folder in (self.root, self.log, self.local, self.locks):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                made.append(str(folder.relative_to(self.root.parent)) + "/")
        for name, text in SCAFFOLD.items():
            path = self.root / name
            if not path.exists():
                # lazy: secrets costs 5 ms at start-up
                import secrets

                # Several threads or processes may set up one folder at once: unique temp names.
                tmp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, path)
                made.append(name)
        return made

    def scaffolded(self) -> bool:
        return all((self.root / name).exists() for name in SCAFFOLD) and self.locks.is_dir()

    def secret(self, name: str) -> bytes:
        """A random secret of this folder (`.local/secrets/<name>`, mode 0600), made on first use
        — the first writer wins, so every server of the folder reads the same one."""
        path = self.local / "secrets" / name
        with contextlib.suppress(FileNotFoundError):
            return _secret_of(path)
        # lazy: secrets costs 5 ms at start-up
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # never replaces a secret another server made meanwhile
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return _secret_of(path)

    def writer_id(self) -> str:
        """This root's writer id, made once per root (docs/storage.md: one writer per clone or
        data folder).

        The file also records the root's real path: a copied folder (cp -r of a clone) would
        otherwise append to the same `<writer>.jsonl` as its original, so a copy gets a new id.
        """
        real = str(self.root.resolve())
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(self.writer_file.read_bytes())
            if info.get("root") == real and WRITER_RE.match(info.get("writer", "")):
                return str(info["writer"])
        # lazy, ms at start-up: secrets 5, socket 3
        import secrets
        import socket

        self.ensure()
        with open(self.locks / "writer.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(self.writer_file.read_bytes())
                if info.get("root") == real and WRITER_RE.match(info.get("writer", "")):
                    return str(info["writer"])
            host = re.sub(r"[^a-z0-9]+", "-", socket.gethostname().lower()).strip("-")[:24]
            writer = f"{host or 'host'}-{secrets.token_hex(4)}"
            tmp = self.writer_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"writer": writer, "root": real}))
            os.replace(tmp, self.writer_file)
            return writer


def _secret_of(path: Path) -> bytes:
    """The secret in `path` (64 hex digits); a damaged one is a StorageError naming the file."""
    try:
        raw = path.read_text(encoding="ascii").strip()
        if len(raw) != 64:
            raise ValueError(raw)
        return bytes.fromhex(raw)
    except (ValueError, UnicodeDecodeError, IsADirectoryError):
        raise StorageError(
            f"{path} is damaged (not a secret of 64 hex digits). Delete it: a new one is made, "
            "and everyone signed in to the web page signs in again."
        ) from None
