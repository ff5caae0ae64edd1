"""The commands that save and read memory: save, latest, show, history, diff, sessions, delete."""

from __future__ import annotations

import argparse
import importlib
import os
import stat
import sys
from pathlib import Path
from typing import Any

from ..codec import loads
from ..errors import NotFound
from ..forget import Forgotten
from ..integrations.gitinfo import branch_and_commit
from ..integrations.restore import restore_text, view_for
from ..layout import Layout, default_user, existing_root, find_root, project_root, user_store
from ..memory import Memory, UserMemory, merged
from ..render import briefing, plain
from ..rules import check_duration, check_version
from .text import Failure, UsageError, colour, out, out_json, plural, table


def root_of(args: argparse.Namespace) -> Path:
    """`--root` (or SESSIONMEM_ROOT), else the nearest .memory/ upward, else the git top
    level's .memory/, else ./.memory (docs/decisions.md, "The command line")."""

    return Path(args.root) if args.root else find_root()


def memory_root(args: argparse.Namespace) -> Path:
    """Where the memory commands read and save: `--root` (or SESSIONMEM_ROOT), else the nearest
    .memory/ upward, else the per-user store the hooks use in a project without one — so an
    agent's `save --merge` lands beside its hooks' snapshots and never makes a folder in a
    working tree (docs/decisions.md, "Where the hooks write"). `init` makes a .memory/."""

    if args.root:
        return Path(args.root)
    return existing_root(Path.cwd()) or user_store()


def open_root(args: argparse.Namespace, *, write: bool = False) -> Path:
    """The memory folder a command works on. Reads never create it; a save makes it (and only
    it: its parent must exist) and says so."""
    root = memory_root(args)
    args._folder = root
    try:
        mode = root.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise Failure(f"Cannot look at the memory folder {root}: {exc.strerror}.") from None
    if mode is not None and stat.S_ISDIR(mode):
        return root
    if mode is not None:
        raise Failure(f"{root} is not a folder; pass --root with the memory folder.")
    if not write:
        how = (
            "--root"
            if args.root
            else "SESSIONMEM_ROOT"
            if os.environ.get("SESSIONMEM_ROOT")
            else None
        )
        if how:
            raise Failure(
                f"No memory folder at {root} (named by {how}). `sessionmem init` makes one, "
                "`sessionmem save` makes it with the first snapshot; --root names another."
            )
        raise Failure(
            f"No memory folder at {root} (no .memory/ found upward from {Path.cwd()}, and this "
            "per-user store is empty). `sessionmem init` makes a .memory/ in this repository; "
            "`sessionmem save` (or an agent's hooks) fills the per-user store; --root names "
            "another folder."
        )

    private = not args.root and existing_root(Path.cwd()) is None and root == user_store()
    if private:
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Failure(f"Cannot make the per-user store {root}: {exc.strerror}.") from None
    if not root.parent.is_dir():
        raise Failure(f"Cannot make the memory folder {root}: {root.parent} does not exist.")

    try:
        Layout(root).ensure()
    except OSError as exc:
        raise Failure(f"Cannot make the memory folder {root}: {exc.strerror}.") from None
    if private:
        sys.stderr.write(
            f"sessionmem: no .memory/ here: saved in the per-user store {root} (`sessionmem "
            "init` makes a .memory/ to keep memory in this repository).\n"
        )
    else:
        sys.stderr.write(
            f"sessionmem: made the memory folder {root} (commit it to share memory).\n"
        )
    return root


def postgres(module: str) -> Any:
    """A module of the PostgreSQL engine (`sessionmem.pg.<module>`), or a Failure saying how to
    install it (the `postgres` extra)."""
    try:  # (the postgres engine costs ~60 ms at start-up, psycopg, and is optional)
        return importlib.import_module(f"sessionmem.pg.{module}")
    except ImportError:
        raise Failure(
            "the PostgreSQL engine is not installed: pip install 'sessionmem[postgres]'."
        ) from None


def database(args: argparse.Namespace) -> Any:
    """The PostgreSQL engine of --database."""
    return postgres("engine").PgStore(args.database)


def backend(args: argparse.Namespace, *, write: bool = False) -> Memory:
    """The user's memory: a server's (`--url`) or the memory folder's."""
    if args.url:
        if not args.api_key:
            raise Failure(
                "--url needs an API key: pass --api-key KEY or set SESSIONMEM_API_KEY "
                "(`sessionmem keys create USER` on the server makes one)."
            )
        # lazy: ..client costs 75 ms at start-up
        from ..client import Client

        return Client(args.url, args.api_key)
    if getattr(args, "database", None):
        return database(args).for_user(default_user(args.user))  # type: ignore[no-any-return]
    root = open_root(args, write=write)
    # lazy: ..store costs 5 ms at start-up
    from ..store import Store

    return Store(root).for_user(default_user(args.user))


# --- save ----------------------------------------------------------------------------------------


def save(args: argparse.Namespace) -> None:
    body = _from_json(args.from_json) if args.from_json else {}
    if args.session_id:
        body["session_id"] = args.session_id
    if not body.get("session_id"):
        body["session_id"] = _current_session(args)
    if not body.get("session_id"):
        raise Failure(
            "--session-id is required (or a session_id in --from-json); inside a Claude Code "
            "session with sessionmem's hooks it defaults to that session."
        )
    be = backend(args, write=True)
    lists = {
        "files_modified": args.file,
        "commands_run": args.command,
        "key_decisions": args.decision,
        "open_tasks": args.task,
    }
    if args.merge:
        try:
            base = dict(be.get(body["session_id"]).session_data)
        except NotFound:
            base = {}
        base.pop("event", None)  # this save is its own event
        body = merged({**base, **body}, lists, args.done)
    else:
        for name, items in lists.items():
            if items:
                existing = list(body.get(name) or []) if args.from_json else []
                body[name] = existing + [x for x in dict.fromkeys(items) if x not in existing]
        if args.done:
            body = merged(body, {}, args.done)
    if args.event:
        body["event"] = args.event
    _where_and_when(body, args)
    snap = be.save(body, idempotency_key=args.idempotency_key)
    if args.json:
        out_json(snap.view())
    else:
        out(f"Saved {snap.session_id} version {snap.version} ({snap.snapshot_id}).\n")


def _from_json(source: str) -> dict[str, Any]:

    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise Failure(f"--from-json: cannot read {source} ({exc.strerror}).") from None
    try:
        body = loads(raw)
    except ValueError as exc:
        raise Failure(f"--from-json: {source} is not valid JSON ({exc}).") from None
    if not isinstance(body, dict):
        raise Failure(f"--from-json: {source} must hold a JSON object.")
    return body


def _where_and_when(body: dict[str, Any], args: argparse.Namespace) -> None:
    """The project (the git top level, as the hooks record it), branch and commit of this save,
    unless given: so a CLI save is found by the next session's briefing like a hook's."""

    given = {
        "project_path": args.project_path,
        "git_branch": args.git_branch,
        "git_commit": args.git_commit,
    }
    for name, value in given.items():
        if value is not None:
            body[name] = value
    if args.from_json and all(name in body for name in given):
        return
    here = project_root(Path.cwd())
    branch = commit = None
    if (here / ".git").exists():
        branch, commit = branch_and_commit(str(Path.cwd()))
    current = {"project_path": str(here), "git_branch": branch, "git_commit": commit}
    for name, value in current.items():
        if given[name] is None and (not args.from_json or name not in body):
            body[name] = value if value is not None else body.get(name)


def _current_session(args: argparse.Namespace) -> str | None:
    """The session the SessionStart hook recorded last in this memory folder, if any."""

    return Layout(memory_root(args)).current_session()


# --- reading -------------------------------------------------------------------------------------


def _print_snapshot(snap: Any, fmt: str) -> None:

    if fmt == "json":
        out_json(snap.view())
    elif fmt == "markdown":
        out(briefing(snap))
    else:
        out(plain(snap))


def latest(args: argparse.Namespace) -> None:
    be = backend(args)
    filters = _filters(args)
    if args.format == "markdown" and not args.json:
        if any(v is not None for v in filters.values()):
            _print_snapshot(be.latest(**filters), "markdown")
            return
        # The very briefing SessionStart gives an agent in this project.
        brief(args, be)
        return
    _print_snapshot(be.latest(**filters), "json" if args.json else args.format)


def brief(args: argparse.Namespace, be: Memory | None = None) -> None:
    """The briefing of this project (the project view: docs/decisions.md, "The briefing")."""
    be = be or backend(args)
    project = getattr(args, "project_path", None) or str(project_root(Path.cwd()))
    view = view_for(
        be,
        project,
        branch=getattr(args, "git_branch", None),
        session_id=getattr(args, "session_id", None),
        resumed=bool(getattr(args, "session_id", None)),
    )
    if getattr(args, "json", False):
        out_json(view.view())
        return
    if view.head is None:
        raise NotFound(f"Nothing to brief on for the project {project} yet.", what="snapshot")
    out(restore_text(view, project))


def show(args: argparse.Namespace) -> None:
    be = backend(args)
    snap = be.get(args.session_id, version=args.version, snapshot_id=args.snapshot_id)
    _print_snapshot(snap, "json" if args.json else args.format)


def history(args: argparse.Namespace) -> None:
    page = backend(args).history(args.session_id, limit=args.limit, cursor=args.cursor)
    if args.json:
        out_json(page.view())
        return
    if not page.items:
        out("No more snapshots.\n")
        return
    headers = ("version", "created_at", "event", "tasks", "decisions", "files", "commands",
               "snapshot_id")  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for e in page.items:
        c = e.counts
        if e.event == "pre_compact" and rows:  # newest first: the compaction came after it
            rows.append(("", "", "── compacted ──", "", "", "", "", ""))
        rows.append((str(e.version), e.created_at, e.event, str(c["open_tasks"]),
                     str(c["key_decisions"]), str(c["files_modified"]), str(c["commands_run"]),
                     e.snapshot_id))  # fmt: skip
    out(table(headers, rows))
    if page.next_cursor:
        out(f"more: --cursor {page.next_cursor}\n")
    elif page.items and page.items[-1].version == 1:
        first = backend(args).get(args.session_id, version=1).session_data
        meta = first.get("metadata")
        parent = meta.get("parent_session") if isinstance(meta, dict) else None
        if isinstance(parent, str) and parent:
            out(f"continues session {parent} (sessionmem history {parent})\n")


def diff(args: argparse.Namespace) -> None:
    d = backend(args).diff(args.session_id, args.from_, args.to)
    if args.json:
        out_json(d.view())
        return
    lines = [
        f"{d.session_id}: version {d.from_version} ({d.from_created_at}) -> "
        f"version {d.to_version} ({d.to_created_at})"
    ]
    for name in d.added:
        if d.added[name] or d.removed[name]:
            lines.append(f"{name}:")
            lines += [colour(f"  - {item}", "31") for item in d.removed[name]]
            lines += [colour(f"  + {item}", "32") for item in d.added[name]]
    for name, change in d.changed.items():
        lines.append(f"{name}: {change['from']!r} -> {change['to']!r}")
    if d.empty:
        lines.append("no changes")
    out("".join(line + "\n" for line in lines))


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The filter flags, by the library's names (--project-path is project_path...)."""
    return {name: getattr(args, name) for name in ("project_path", "git_branch", "event", "agent")}


def search(args: argparse.Namespace) -> None:
    page = backend(args).search(
        args.query,
        **_filters(args),
        session_id=args.session_id,
        since=args.since,
        until=args.until,
        all_versions=args.all_versions or None,
        limit=args.limit,
        cursor=args.cursor,
    )
    if args.json:
        out_json(page.view())
        return
    if not page.items:
        out("Nothing matches.\n")
        return
    rows = [(h.session_id, str(h.version), h.field, h.created_at, " ".join(h.snippet.split()))
            for h in page.items]  # fmt: skip
    out(table(("session", "version", "field", "created_at", "match"), rows))
    if page.next_cursor:
        out(f"more: --cursor {page.next_cursor}\n")


def sessions(args: argparse.Namespace) -> None:
    page = backend(args).sessions(**_filters(args), limit=args.limit, cursor=args.cursor)
    if args.json:
        out_json(page.view())
        return
    if not page.items:
        filtered = args.project_path or args.git_branch or args.event
        out("No sessions match these filters.\n" if filtered else "No sessions yet.\n")
        return
    headers = ("session_id", "version", "created_at", "event", "tasks", "branch", "project")
    rows = [
        (
            s.session_id,
            str(s.version),
            s.created_at,
            s.event,
            str(s.counts["open_tasks"]),
            s.git_branch or "",
            s.project_path or "",
        )  # fmt: skip
        for s in page.items
    ]
    out(table(headers, rows))
    if page.next_cursor:
        out(f"more: --cursor {page.next_cursor}\n")


def delete(args: argparse.Namespace) -> None:
    hidden = backend(args).delete(args.session_id)
    out(f"Deleted session {args.session_id} ({plural(hidden, 'version')} hidden).\n")


# --- forget, prune ------------------------------------------------------------------------------


def forget(args: argparse.Namespace) -> None:
    if (args.text is None) == (args.session_id is None):
        raise UsageError("give a SESSION to erase, or --text STRING (one of them)")
    if args.url:
        if args.text is not None:
            raise UsageError("--text works on a memory folder, not over --url")
        answer = backend(args).forget(args.session_id)
        if args.json:
            return out_json(answer)
        return out(f"Forgot session {args.session_id}: {plural(answer['events'], 'event')}.\n")
    store, user = _local(args)
    if args.text is not None:
        text = sys.stdin.readline().rstrip("\r\n") if args.text == "-" else args.text
        done = store.forget_text(text)
        head = f"Replaced the string in {plural(done.events, 'event')} with [REDACTED]"
    else:
        done = store.forget(user, args.session_id)
        head = f"Forgot session {args.session_id}: {plural(done.events, 'event')} erased"
    _report(args, head, done)


def prune(args: argparse.Namespace) -> None:
    if args.keep_versions is None and args.older_than is None:
        raise UsageError("give --keep-versions N, --older-than DURATION, or both")
    keep = check_version(args.keep_versions, "keep_versions") if args.keep_versions else None
    age = check_duration(args.older_than) if args.older_than is not None else None
    store, user = _local(args)
    done = store.prune(user, keep_versions=keep, older_than_ms=age)
    _report(args, f"Pruned {plural(done.events, 'older version')}", done)


def _local(args: argparse.Namespace) -> tuple[Any, str]:
    """The engine itself — the memory folder's `Store`, or --database's — and the user:
    forget --text and prune are not offered over --url."""
    if args.url:
        raise UsageError("this works on a memory folder (--root) or a --database, not over --url")
    mem = backend(args)  # (never made here: there would be nothing in it to erase)
    assert isinstance(mem, UserMemory)
    return mem.store, mem.user


def _report(args: argparse.Namespace, head: str, done: Forgotten) -> None:
    if args.json:
        return out_json(done.view())
    lines = [head + (f" from {', '.join(done.files)}." if done.files else ".")]
    if done.derived:
        lines.append(f"Removed or cleaned what was derived: {', '.join(done.derived)}.")
    if done.record:
        lines.append(
            f"Erase record {done.record} (ids and hashes only): commit .memory/erased/ and every "
            "clone that merges it erases these lines too."
        )
    if done.committed:
        lines.append(
            f"Warning: these lines were committed to git ({', '.join(done.committed[:5])}"
            f"{', …' if len(done.committed) > 5 else ''}): git's history still holds them. "
            "sessionmem never rewrites history; to remove them:\n  " + (done.filter_repo or "")
        )
    out("\n".join(lines) + "\n")
