"""`sessionmem serve`: the HTTP server in the foreground, or detached with `--background` and
stopped with `--stop` (docs/decisions.md, "A hostile workspace": neither ever reports what did
not happen)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..codec import dumps, loads
from ..layout import Layout, default_user
from ..retention import read as read_retention
from .admin import ensure_folder
from .memory import database, open_root, root_of
from .text import Failure, UsageError, out


def serve(args: argparse.Namespace) -> int | None:
    if args.database:
        if args.background or args.stop:
            raise UsageError("--background and --stop serve a memory folder, not --database")
        engine = database(args)  # reachable, and at this code's schema: else one clear line
        _first_key_of(engine.keys(), None)
        engine.close()
        os.environ["SESSIONMEM_DATABASE"] = args.database
        where = "the database"
    else:
        folder = root_of(args).resolve()
        if args.stop:
            return _stop(folder)
        ensure_folder(folder)
        read_retention(folder)  # a mistake in [retention] stops the start, naming the setting
        _first_key(folder)
        if args.background:
            return _background(folder, args)
        os.environ["SESSIONMEM_ROOT"] = str(folder)
        os.environ.pop("SESSIONMEM_DATABASE", None)
        where = str(folder)
    # lazy, ms at start-up: uvicorn 46, ..http.guard 56
    import uvicorn

    from ..http.guard import (
        BODY_TIMEOUT_ENV,
        HEADER_TIMEOUT_ENV,
        PROTOCOL,
        default_max_connections,
    )

    os.environ["SESSIONMEM_FOLLOW"] = "1" if args.follow else "0"
    os.environ[HEADER_TIMEOUT_ENV] = str(args.header_timeout)
    os.environ[BODY_TIMEOUT_ENV] = str(args.body_timeout)
    if args.durability:
        os.environ["SESSIONMEM_DURABILITY"] = args.durability
    sys.stderr.write(
        f"Serving {where} on http://{args.host}:{args.port} (API docs at /docs); "
        "stop it with Ctrl-C.\n"
    )
    if args.workers > 1:
        _accepted_sockets_without_delay()
    uvicorn.run(
        "sessionmem.http.app:app_from_env",
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
    # lazy: ..keys costs 8 ms at start-up
    from ..keys import KeyRing

    _first_key_of(KeyRing(Layout(folder)), folder)


def _first_key_of(ring: Any, folder: Path | None) -> None:
    if not ring.list():
        user = default_user(None, folder.parent if folder else None)
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
    # lazy, ms at start-up: secrets 4, subprocess 3, urllib.request 19, ..http.app 204
    import secrets
    import subprocess
    import urllib.request

    from ..http.app import INSTANCE_ENV

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
    # lazy: socket costs 3 ms at start-up
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
    # lazy, ms at start-up: socket 2, uvicorn.config 47
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


def ui(args: argparse.Namespace) -> int | None:
    """`sessionmem ui`: the web page of this memory on 127.0.0.1 (docs/web.md), and a one-time
    sign-in link for the current user, printed and opened in a browser when there is one."""
    # lazy, ms at start-up: uvicorn 46, ..http.app 204, socket 3
    import socket

    import uvicorn

    from ..http.app import create_app
    from ..http.guard import PROTOCOL
    from ..store import Store

    if args.database:
        engine: Any = database(args)
        where, cwd = "the database", None
    else:
        folder = open_root(args)  # an existing folder: the page never makes one
        engine, where, cwd = Store(folder), str(folder), folder.parent
    user = default_user(args.user, cwd)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError:  # taken: any free port will do for a link
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(engine, follow=True)
    link = f"http://127.0.0.1:{port}/ui/signin?token={app.state.ui_links.make(user)}"
    out(f"Serving {where} on http://127.0.0.1:{port}/ui/ ; stop it with Ctrl-C.\n")
    out(f"Sign in as {user} with this link (it works once, within 10 minutes):\n    {link}\n")
    sys.stdout.flush()
    if args.browser and _has_browser():
        # lazy: webbrowser costs 10 ms at start-up
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, [link]).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, http=PROTOCOL)
    uvicorn.Server(config).run(sockets=[sock])
    return None


def _has_browser() -> bool:
    """A browser can be opened here: a desktop session (not an SSH shell or a container)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
