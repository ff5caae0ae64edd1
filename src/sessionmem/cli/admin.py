"""The commands around the memory: init, serve, keys, verify, hook, install."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFound, StorageError

if TYPE_CHECKING:
    from ..keys import KeyRing
from . import Failure, build_parser
from .memory import memory_root, open_root, root_of
from .text import out, out_json, plural


def _ensure(folder: Path) -> list[str]:
    from ..layout import Layout

    try:
        return Layout(folder).ensure()
    except OSError as exc:
        raise Failure(f"Cannot set up the memory folder {folder}: {exc.strerror}.") from None


def init(args: argparse.Namespace) -> None:
    folder = root_of(args)
    made = _ensure(folder)
    if made:
        out(f"Initialised {folder}: made {', '.join(made)}\n")
    else:
        out(f"{folder} is already set up; nothing to do.\n")


# --- serve ---------------------------------------------------------------------------------------


def mcp(args: argparse.Namespace) -> None:
    """`sessionmem mcp`: the MCP server over stdio, on the memory the other commands use."""
    from ..integrations.mcp_server import build
    from ..layout import Layout, project_root
    from .memory import backend

    made: list[Any] = []

    def memory(write: bool) -> Any:
        if not made:  # kept once found (its projection too); a missing folder is asked again
            made.append(backend(args, write=write))
        return made[0]

    def session() -> str | None:
        return None if args.url else Layout(memory_root(args)).current_session()

    build(memory, project=str(project_root(Path.cwd())), session=session).run()


def serve(args: argparse.Namespace) -> int | None:
    folder = root_of(args).resolve()
    if args.stop:
        return _stop(folder)
    _ensure(folder)
    _first_key(folder)
    if args.background:
        return _background(folder, args)
    import uvicorn

    from ..guard import (
        BODY_TIMEOUT_ENV,
        HEADER_TIMEOUT_ENV,
        PROTOCOL,
        default_max_connections,
    )

    os.environ["SESSIONMEM_ROOT"] = str(folder)
    os.environ["SESSIONMEM_FOLLOW"] = "1" if args.follow else "0"
    os.environ[HEADER_TIMEOUT_ENV] = str(args.header_timeout)
    os.environ[BODY_TIMEOUT_ENV] = str(args.body_timeout)
    if args.durability:
        os.environ["SESSIONMEM_DURABILITY"] = args.durability
    sys.stderr.write(
        f"Serving {folder} on http://{args.host}:{args.port} (API docs at /docs); "
        "stop it with Ctrl-C.\n"
    )
    if args.workers > 1:
        _accepted_sockets_without_delay()
    uvicorn.run(
        "sessionmem.api:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
        http=PROTOCOL,
        limit_concurrency=args.max_connections or default_max_connections(),
        timeout_keep_alive=args.keep_alive_timeout,
    )
    return None


def _first_key(folder: Path) -> None:
    """A server started with no key makes one for the local user and says so, once."""
    from ..keys import KeyRing
    from ..layout import Layout, default_user

    ring = KeyRing(Layout(folder))
    if not ring.list():
        user = default_user(None, folder.parent)
        info, key = ring.create(user)
        out(f"No API key was configured: created one for user {user!r} (id {info.id}).\n")
        out("It is shown only this once; more with `sessionmem keys create USER`:\n")
        out(key + "\n")
        sys.stdout.flush()  # uvicorn runs until stopped: show the key now, not at exit


def _background(folder: Path, args: argparse.Namespace) -> int:
    """Start `sessionmem serve` detached, its output in .local/serve.log; return once it
    answers /healthz (or say why it did not)."""

    state = folder / ".local" / "serve.json"
    # One start at a time per folder: a second, concurrent one is refused, not raced.
    lock = os.open(folder / ".local" / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Failure(
                f"Another `sessionmem serve --background` is starting for {folder}; wait for it, "
                "then `sessionmem serve --stop` stops it."
            ) from None
        return _start_background(folder, state, args)
    finally:
        os.close(lock)


def _start_background(folder: Path, state: Path, args: argparse.Namespace) -> int:
    import secrets
    import subprocess
    import time
    import urllib.request

    from ..api import INSTANCE_ENV
    from ..codec import dumps, loads

    running = _running(state)
    if running is not None:
        raise Failure(
            f"A server started with --background already serves {folder} (process "
            f"{running['pid']}, port {running['port']}). Stop it with `sessionmem serve --stop`."
        )
    _check_port_free(args.host, args.port)
    argv = [sys.executable, "-m", "sessionmem", "serve", "--root", str(folder), "--host",
            args.host, "--port", str(args.port), "--workers", str(args.workers),
            "--log-level", args.log_level, "--follow" if args.follow else "--no-follow",
            "--access-log" if args.access_log else "--no-access-log",
            "--header-timeout", str(args.header_timeout),
            "--body-timeout", str(args.body_timeout),
            "--keep-alive-timeout", str(args.keep_alive_timeout)]  # fmt: skip
    if args.max_connections:
        argv += ["--max-connections", str(args.max_connections)]
    if args.durability:
        argv += ["--durability", args.durability]
    instance = secrets.token_hex(16)
    log_path = folder / ".local" / "serve.log"
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, INSTANCE_ENV: instance},
        )  # fmt: skip
    state.write_bytes(
        dumps(
            {
                "pid": child.pid,
                "started": _started_at(child.pid),
                "host": args.host,
                "port": args.port,
            }
        )
    )
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{host}:{args.port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            state.unlink(missing_ok=True)
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise Failure(f"The server stopped at once: {' / '.join(tail)} (log: {log_path}).")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as answer:
                if loads(answer.read()).get("instance") == instance:
                    break  # our child answers: not another server on that port
        except (OSError, ValueError, AttributeError):
            pass
        time.sleep(0.1)
    else:
        _kill_group(child.pid)
        state.unlink(missing_ok=True)
        raise Failure(
            f"The server did not answer at {url} within 60 s, so it was stopped (log: {log_path})."
        )
    out(f"Serving {folder} on {url} (process {child.pid}); its log is {log_path}.\n")
    out("Stop it with: sessionmem serve --stop (or scripts/serve --stop)\n")
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on (its /healthz would answer for ours)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise Failure(
                f"Port {port} on {host} is in use ({exc.strerror}); pick another with --port."
            ) from None


def _kill_group(pid: int) -> None:
    import signal

    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)  # (the server leads its own session: workers too)


def _started_at(pid: int) -> str | None:
    """When the process started (clock ticks since boot, from /proc), or None where there is no
    /proc: with the pid it names one process, never another that got the pid later."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _running(state: Path) -> dict[str, Any] | None:
    """The server `--background` started for this folder, if it is still that process."""
    from ..codec import loads

    try:
        info = loads(state.read_bytes())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(info, dict) or info.get("started") != _started_at(pid):
        return None  # the pid now belongs to another process
    return info


STOP_GRACE = 15.0  # seconds for a graceful stop (requests in flight finish) before SIGKILL


def _stop(folder: Path) -> int:
    """Stop the server --background started: SIGTERM, then — still running after STOP_GRACE
    seconds — SIGKILL of its process group, said so; the state is removed only once it is gone."""
    import signal

    state = folder / ".local" / "serve.json"
    info = _running(state)
    if info is None:
        state.unlink(missing_ok=True)
        raise Failure(f"No server started with --background is running for {folder}.")
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    how = ""
    grace = float(os.environ.get("SESSIONMEM_STOP_GRACE") or STOP_GRACE)
    if not _gone(pid, info, grace):
        _kill_group(pid)
        how = f" with SIGKILL: it had not stopped {grace:g} s after SIGTERM"
        if not _gone(pid, info, 5.0):
            raise Failure(f"The server (process {pid}) did not stop, even after SIGKILL.")
    state.unlink(missing_ok=True)
    out(f"Stopped the server on port {info['port']} (process {pid}){how}.\n")
    return 0


def _gone(pid: int, info: dict[str, Any], seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        if _started_at(pid) != info.get("started"):
            return True  # gone, and the pid already names another process
        if _zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _accepted_sockets_without_delay() -> None:
    """With several workers uvicorn binds the listening socket itself, with protocol 0; asyncio
    sets TCP_NODELAY only on sockets whose protocol is TCP, so every answer written in two parts
    then waits for a delayed ACK (~40 ms): 360 requests/s in all, measured here, even for an
    empty app. Give the socket its protocol back (same descriptor, nothing else changes)."""
    import socket

    import uvicorn.config

    bind = uvicorn.config.Config.bind_socket
    if getattr(bind, "sessionmem", False):
        return

    def bind_socket(self: uvicorn.config.Config) -> socket.socket:
        sock = bind(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        return sock

    bind_socket.sessionmem = True  # type: ignore[attr-defined]
    uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]


# --- keys ----------------------------------------------------------------------------------------


def _ring(args: argparse.Namespace) -> KeyRing:
    from ..keys import KeyRing
    from ..layout import Layout

    return KeyRing(Layout(root_of(args)))


def keys_help(args: argparse.Namespace) -> int:
    build_parser().parse_args(["keys", "--help"])
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
    from ..integrations.hooks import main as hook_main

    return hook_main([args.agent])  # (an unknown agent is said on stderr; a hook exits 0)


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
    from ..integrations import install as inst

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
    from ..integrations.status import NEEDS

    out(f"{agent} needs: {NEEDS[agent]}\n")
    out(
        "Memory goes to this repository's .memory/ once `sessionmem init` made it; until then "
        "to your per-user store (`sessionmem status` tells which).\n"
    )


def install(args: argparse.Namespace) -> None:
    from ..integrations import install as inst
    from ..layout import project_root

    project = Path(
        args.project_dir or os.environ.get("CLAUDE_PROJECT_DIR") or project_root(Path.cwd())
    )
    path = inst.settings_path(args.scope, project, agent=args.agent)
    command = args.hook_command or hook_command(args.agent)
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
    from ..integrations.status import NEEDS, installed_hooks, last_runs
    from ..layout import default_user, existing_root, project_root, user_store
    from ..render import safe as safe_text

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
        from ..integrations.restore import view_for
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
