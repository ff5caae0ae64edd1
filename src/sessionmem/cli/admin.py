"""The commands around the memory: init, serve, keys, verify, hook, install."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFound, StorageError
from ..integrations import install as inst
from ..integrations.restore import view_for
from ..integrations.status import NEEDS, installed_hooks, last_runs
from ..layout import Layout, default_user, existing_root, project_root, user_store
from ..render import safe as safe_text
from .memory import backend, database, postgres

if TYPE_CHECKING:
    pass
from .memory import memory_root, open_root, root_of
from .text import Failure, UsageError, out, out_json, plural


def ensure_folder(folder: Path) -> list[str]:

    try:
        return Layout(folder).ensure()
    except OSError as exc:
        raise Failure(f"Cannot set up the memory folder {folder}: {exc.strerror}.") from None


def init(args: argparse.Namespace) -> None:
    folder = root_of(args)
    made = ensure_folder(folder)
    if made:
        out(f"Initialised {folder}: made {', '.join(made)}\n")
    elif not args.sync_branch:
        out(f"{folder} is already set up; nothing to do.\n")
    if args.sync_branch:
        # lazy: ..syncsetup costs ~2 ms at start-up
        from ..syncsetup import use_sync_branch

        for line in use_sync_branch(folder):
            out(line + "\n")


def sync(args: argparse.Namespace) -> int:
    """`sessionmem sync`: send and receive memory through the remote's memory branch."""
    # lazy: ..sync costs ~10 ms at start-up
    from .. import sync as syncing
    from ..gitplumb import Git
    from ..store import Store

    folder = root_of(args)
    if not folder.is_dir():
        if not folder.parent.is_dir() or Git(folder.parent).git_dir() is None:
            raise Failure(f"No memory folder at {folder}, and no git repository there to sync.")
        ensure_folder(folder)  # a fresh clone: the memory comes with this sync
    store = Store(folder)
    try:
        if args.status:
            st = syncing.status(store, args.remote, args.branch)
            if args.json:
                out_json(st._asdict())
                return 0
            last = st.last
            out(
                f"{plural(st.only_here, 'event')} only here, {plural(st.only_there, 'event')} "
                f"only on {args.remote}/{args.branch}"
                + ("" if st.remote_has_branch else " (it has no such branch yet)")
                + ".\n"
            )
            out(f"Last sync: {last['at']} with {last['remote']}/{last['branch']}.\n" if last
                else "Last sync: never, from this clone.\n")  # fmt: skip
            return 0
        done = syncing.sync(store, args.remote, args.branch)
    except Exception as exc:
        if args.from_hook:  # (in the background: hooks.log is where it is read)
            _hook_log(folder, f"sync failed: {exc}")
            return 1
        raise
    finally:
        store.close()
    said = (f"Synced with {args.remote}/{args.branch}: sent {plural(done.sent, 'event')}, "
            f"received {plural(done.received, 'event')}"
            + (f", {plural(len(done.written), 'file')} written" if done.written else "")
            + (f" ({done.attempts} tries)" if done.attempts > 1 else "") + ".")  # fmt: skip
    if args.from_hook:
        _hook_log(folder, said)
    elif args.json:
        out_json(done._asdict())
    else:
        out(said + "\n")
    return 0


def _hook_log(folder: Path, message: str) -> None:
    # lazy: ..integrations.background costs ~1 ms at start-up
    from ..integrations.background import append_log

    append_log(folder / ".local" / "hooks.log", "sync", message)


# --- serve ---------------------------------------------------------------------------------------


def mcp(args: argparse.Namespace) -> None:
    """`sessionmem mcp`: the MCP server over stdio, on the memory the other commands use."""
    # lazy: ..integrations.mcp_server costs 512 ms at start-up
    from ..integrations.mcp_server import build

    made: list[Any] = []

    def memory(write: bool) -> Any:
        if not made:  # kept once found (its projection too); a missing folder is asked again
            made.append(backend(args, write=write))
        return made[0]

    def session() -> str | None:
        return None if args.url else Layout(memory_root(args)).current_session()

    build(memory, project=str(project_root(Path.cwd())), session=session).run()


# --- keys ----------------------------------------------------------------------------------------


def _ring(args: argparse.Namespace) -> Any:
    """The keys of the memory folder, or of the database (--database)."""
    if getattr(args, "database", None):
        return database(args).keys()
    # lazy: ..keys costs 9 ms at start-up
    from ..keys import KeyRing

    return KeyRing(Layout(root_of(args)))


def db_help(args: argparse.Namespace) -> int:
    args._parser.parse_args(["db", "--help"])
    return 0


def db_upgrade(args: argparse.Namespace) -> None:
    if not args.database:
        raise UsageError("db upgrade needs --database URL (or SESSIONMEM_DATABASE)")
    schema = postgres("schema")
    with postgres("engine").connect_for_admin(args.database)() as conn:
        done = schema.upgrade(conn)
    if done:
        out(f"Upgraded the database to schema version {done[-1]}.\n")
    else:
        out(f"The database is at schema version {schema.SCHEMA_VERSION} already.\n")


def keys_help(args: argparse.Namespace) -> int:
    args._parser.parse_args(["keys", "--help"])
    return 0


def keys_create(args: argparse.Namespace) -> None:
    try:
        info, key = _ring(args).create(args.user)
    except OSError as exc:
        raise StorageError(
            f"Cannot write the key file under {root_of(args)}: {exc.strerror}."
        ) from None
    sys.stderr.write(
        f"Created key {info.id} for user {info.user!r}. It is not stored; keep it now:\n"
    )
    out(key + "\n")


def keys_list(args: argparse.Namespace) -> None:
    keys = _ring(args).list()
    if args.json:
        out_json([k.__dict__ for k in keys])
    elif not keys:
        out("No API keys yet; `sessionmem keys create USER` makes one.\n")
    else:
        for k in keys:
            out(f"{k.id}  {k.user}  {k.created_at}\n")


def keys_revoke(args: argparse.Namespace) -> None:
    try:
        revoked = _ring(args).revoke(args.key_id)
    except NotFound as exc:
        exc.what = "key"
        raise
    for k in revoked:
        out(f"Revoked key {k.id} of user {k.user!r}.\n")


# --- verify --------------------------------------------------------------------------------------


def verify(args: argparse.Namespace) -> int:
    # lazy: ..verify costs 4 ms at start-up
    from ..verify import verify as run_verify

    folder = open_root(args)
    report = run_verify(folder, repair=args.repair)
    if args.json:
        out_json(report.view())
    else:
        for f in report.findings:
            where = f"{f.path}" + (f" @{f.offset}" if f.offset is not None else "")
            out(f"{f.level:<8} {f.kind:<22} {where}: {f.message}\n")
        for line in report.moved:
            out(f"repaired {line}\n")
        if args.repair:
            for line in report.unresolved:
                out(f"left     {line}\n")
        errors = sum(f.level == "error" for f in report.findings)
        warnings = sum(f.level == "warning" for f in report.findings)
        state = "damaged" if report.damaged else "clean"
        out(
            f"{folder}: {plural(report.files, 'file')}, {plural(report.events, 'event')}, "
            f"{plural(errors, 'error')}, {plural(warnings, 'warning')}: {state}"
            + (" (before repair)" if args.repair and report.moved else "")
            + "\n"
        )
    failed = report.damaged and not (
        args.repair and report.moved and not run_verify(folder).damaged
    )
    return (
        1 if failed or (args.strict and any(f.level == "warning" for f in report.findings)) else 0
    )


# --- agents --------------------------------------------------------------------------------------


def hook(args: argparse.Namespace) -> int:
    # lazy: ..integrations.hooks costs 3 ms at start-up
    from ..integrations.hooks import main as hook_main

    # (an unknown agent is said on stderr; a hook exits 0)
    return hook_main([args.agent, *(["--sync"] if args.sync else [])])


def hook_command(agent: str) -> str:
    """A command that runs our hook whatever PATH the agent gives it: this very executable's
    absolute path (the console script in its virtualenv), else the one on PATH, else this
    interpreter running the package."""
    exe = sys.argv[0]
    if os.path.basename(exe) == "sessionmem" and os.path.isfile(exe) and os.access(exe, os.X_OK):
        return f"{shlex.quote(os.path.abspath(exe))} hook {agent}"
    found = shutil.which("sessionmem")
    if found:
        return f"{shlex.quote(os.path.abspath(found))} hook {agent}"
    return f"{shlex.quote(sys.executable)} -m sessionmem hook {agent}"


def _install_other(args: argparse.Namespace, path: Path, command: str) -> None:
    """Codex, Gemini CLI, Cursor: their hooks in their own file (the MCP server is one line in
    each agent's own configuration: README)."""

    if args.uninstall:
        if args.agent == "cursor":
            removed = inst.uninstall_cursor(path, command)
        else:
            removed = inst.uninstall(path, command=command)
        out(
            f"Removed from {path}: {', '.join(removed)}\n"
            if removed
            else f"Nothing of sessionmem's in {path}.\n"
        )
        return
    if args.agent == "cursor":
        added = inst.install_cursor(path, command)
    else:
        added = inst.install(path, command=command, entries=inst.OTHER_AGENTS[args.agent][2])
    out(
        f"Added to {path}: {', '.join(added)} (running {command})\n"
        if added
        else f"{path} already has sessionmem's hooks; nothing to do.\n"
    )
    _needs(args.agent)


def _needs(agent: str) -> None:
    """What the agent needs beyond its hook file, and where the memory will go."""

    out(f"{agent} needs: {NEEDS[agent]}\n")
    out(
        "Memory goes to this repository's .memory/ once `sessionmem init` made it; until then "
        "to your per-user store (`sessionmem status` tells which).\n"
    )


def install(args: argparse.Namespace) -> None:

    project = Path(
        args.project_dir or os.environ.get("CLAUDE_PROJECT_DIR") or project_root(Path.cwd())
    )
    path = inst.settings_path(args.scope, project, agent=args.agent)
    command = args.hook_command or hook_command(args.agent)
    if args.sync and not args.uninstall:
        command += inst.SYNC_FLAG  # after a session, a sync in the background (docs/sync.md)
    for file in (path, project / inst.MCP_FILE if args.mcp else None):
        if file is not None and file.is_symlink():
            out(f"{file} is a link: its target {inst.target_of(file)} is what changes.\n")
    if args.agent in inst.OTHER_AGENTS:
        _install_other(args, path, command)
        return
    mcp_path = project / inst.MCP_FILE
    if args.uninstall:
        removed = inst.uninstall(path)
        out(
            f"Removed from {path}: {', '.join(removed)}\n"
            if removed
            else f"Nothing of sessionmem's in {path}.\n"
        )
        if args.mcp and inst.uninstall_mcp(mcp_path):
            out(f"Removed the MCP server sessionmem from {mcp_path}\n")
        return
    if args.mcp:
        inst.read_settings(mcp_path)  # a broken .mcp.json stops us before anything is written
    added = inst.install(path, command=command, stop=args.stop)
    out(
        f"Added to {path}: {', '.join(added)} (running {command})\n"
        if added
        else f"{path} already has sessionmem's hooks; nothing to do.\n"
    )
    if args.mcp:
        executable = command.rsplit(" hook ", 1)[0]
        changed = inst.install_mcp(mcp_path, shlex.split(executable))
        out(
            f"Registered the MCP server sessionmem in {mcp_path} (running {executable} mcp)\n"
            if changed
            else f"{mcp_path} already registers sessionmem; nothing to do.\n"
        )
    _needs(args.agent)
    cli = command.rsplit(" hook ", 1)[0]
    out("Add this line to CLAUDE.md so the agent records its decisions:\n")
    out(inst.claude_md_line(cli) + "\n")


def status(args: argparse.Namespace) -> int:
    """`sessionmem status`: where memory goes here, the hooks installed, their last runs and the
    snapshot the next briefing comes from (docs/decisions.md, "Where the hooks write")."""

    project = Path(args.project_dir or project_root(Path.cwd()))
    found = existing_root(project)
    root = Path(args.root) if args.root else found or user_store()
    where = "repository" if found is not None and not args.root else "named"
    if not args.root and found is None:
        where = "per-user store"
    user = default_user(args.user, project)
    hooks = installed_hooks(project)
    head: dict[str, Any] | None = None
    carried = 0
    problem = None
    if root.is_dir() and not args.url:
        # lazy: ..store costs 5 ms at start-up
        from ..store import Store

        try:
            view = view_for(Store(root).for_user(user), str(project))
            carried = len(view.carried(view.open_tasks))
            if view.head is not None:
                snap = view.head
                head = {"session_id": snap.session_id, "version": snap.version,
                        "created_at": snap.created_at, "event": snap.event}  # fmt: skip
        except Exception as exc:  # status reports; it never fails on what it finds
            problem = str(exc)
    report = {
        "project": str(project),
        "memory": {"root": str(root), "kind": where, "exists": root.is_dir(), "user": user},
        "hooks": hooks,
        "last_runs": last_runs(root / ".local" / "hooks.log"),  # (read twice: kept typed)
        "next_briefing": {"head": head, "carried_open_tasks": carried, "problem": problem},
    }
    if args.json:
        out_json(report)
        return 0
    lines = [f"Project      {project}"]
    kind = {
        "repository": "this repository's .memory/ (committed with it)",
        "per-user store": "the per-user store (no .memory/ here: `sessionmem init` makes one)",
        "named": "the folder --root or SESSIONMEM_ROOT names",
    }[where]
    lines.append(f"Memory       {root} — {kind}{'' if root.is_dir() else ' (not made yet)'}")
    lines.append(f"User         {user}")
    lines.append("Hooks")
    shown = [h for h in hooks if h["installed"] or h.get("problem")]
    for h in shown:
        if h.get("problem"):
            lines.append(f"  {h['agent']:<12} {h['scope']:<8} {h['path']}: {h['problem']}")
            continue
        ok = "resolves" if h["resolves"] else "DOES NOT RESOLVE: reinstall"
        lines.append(f"  {h['agent']:<12} {h['scope']:<8} {', '.join(h['events'])} — command {ok}")
        lines.append(f"  {'':<12} {'':<8} needs: {NEEDS[h['agent']]}")
    if not shown:
        lines.append("  none installed (`sessionmem install claude-code|codex|gemini|cursor`)")
    lines.append("Last hook runs")
    runs = last_runs(root / ".local" / "hooks.log")
    lines += [f"  {safe_text(r)}" for r in runs] or ["  none yet"]
    if head is not None:
        lines.append(
            f"Next briefing from {head['session_id']} version {head['version']} "
            f"({head['created_at']}), with {carried} open task{'s' if carried != 1 else ''} "
            "carried from earlier sessions (`sessionmem brief` shows it)"
        )
    else:
        lines.append(
            "Next briefing: nothing stored for this project yet"
            + (f" ({problem})" if problem else "")
        )
    out("\n".join(lines) + "\n")
    return 0


def copy(args: argparse.Namespace) -> None:
    done = postgres("copy").copy(args.source, args.target)
    out(
        f"Copied {plural(done.events, 'event')} of {plural(done.users, 'user')} and "
        f"{plural(done.erase_records, 'erase record')} (what {args.target} held already was "
        "left as it is).\n"
    )
