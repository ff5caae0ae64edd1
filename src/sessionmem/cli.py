"""The `sessionmem` command: a thin edge over `Store` (or over a server with `--url`).

Every command opens the store (or a client), calls one library function, and turns library errors
into a clean message and exit code 1 here, at the edge only (STYLE: sqlite-utils).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .codec import dumps_view
from .errors import ClientError, SessionmemError
from .layout import Layout, default_user, find_root
from .model import Snapshot

T = TypeVar("T")

app = typer.Typer(
    help="Git-native session memory for AI coding agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        envvar="SESSIONMEM_ROOT",
        help="The memory folder itself (holding log/ and .local/). "
        "Default: the nearest .memory/ upward, else ./.memory.",
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="SESSIONMEM_URL", help="Talk to this server instead."),
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="SESSIONMEM_API_KEY", help="API key for --url."),
]
UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user",
        help="User id when working on the folder directly. "
        "Default: SESSIONMEM_USER, git user.email, the OS user.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
ProjectOpt = Annotated[str | None, typer.Option("--project-path", help="Only this project.")]
BranchOpt = Annotated[str | None, typer.Option("--git-branch", help="Only this git branch.")]
EventOpt = Annotated[
    str | None, typer.Option("--event", help="Only pre_compact, session_end or checkpoint.")
]


def _root(root: Path | None) -> Path:
    return root if root is not None else find_root()


def fail(message: str) -> None:
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ClientError as exc:
        fail(str(exc))
    except SessionmemError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


class Local:
    """The Client's vocabulary over a Store, so commands do not care which one they hold."""

    def __init__(self, root: Path, user: str):
        from .store import Store

        self.store = Store(root)
        self.user = user

    def save(self, body: dict[str, Any], idempotency_key: str | None = None) -> Snapshot:
        return self.store.append(self.user, body, idempotency_key=idempotency_key)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)
        return lambda *a, **kw: method(self.user, *a, **kw)


def backend(root: Path | None, url: str | None, api_key: str | None, user: str | None) -> Any:
    if url:
        from .client import Client

        client = Client(url, api_key)
        return _Remote(client)
    return guard(lambda: Local(_root(root), default_user(user)))


class _Remote:
    def __init__(self, client: Any):
        self.client = client

    def save(self, body: dict[str, Any], idempotency_key: str | None = None) -> Snapshot:
        return self.client.save(body, idempotency_key=idempotency_key)  # type: ignore[no-any-return,unused-ignore]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def _out_json(value: Any) -> None:
    sys.stdout.write(dumps_view(value).decode() + "\n")


def _console() -> Any:
    from rich.console import Console

    # Not a terminal (a pipe, a test): a fixed width, so output does not depend on where it runs.
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=True, width=width)


# --- serving and keys -------------------------------------------------------------------


@app.command()
def serve(
    root: RootOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    durability: Annotated[
        str, typer.Option(help="durable (fsync before answering) or fast (no fsync).")
    ] = "durable",
    follow: Annotated[bool, typer.Option(help="Watch the logs for other writers.")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the memory folder over HTTP (FastAPI on uvicorn)."""
    import uvicorn

    from .keys import KeyRing

    folder = _root(root).resolve()
    layout = Layout(folder)
    guard(layout.ensure)
    ring = KeyRing(layout)
    if not ring.list():
        user = guard(lambda: default_user(None, folder.parent))
        info, key = ring.create(user)
        typer.echo(f"No API key was configured: created one for user {user!r} (id {info.id}).")
        typer.echo("It is shown only this once; more with `sessionmem keys create USER`:")
        typer.echo(key)
        sys.stdout.flush()  # uvicorn runs until stopped: show the key now, not at exit
    os.environ["SESSIONMEM_ROOT"] = str(folder)
    os.environ["SESSIONMEM_FOLLOW"] = "1" if follow else "0"
    os.environ["SESSIONMEM_DURABILITY"] = durability
    typer.echo(f"Serving {folder} on http://{host}:{port} (API docs at /docs)", err=True)
    if workers > 1:
        _accepted_sockets_without_delay()
    uvicorn.run(
        "sessionmem.api:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


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


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Argument(help="User id.")], root: RootOpt = None
) -> None:
    """Create an API key for USER and print it (shown only once)."""
    from .keys import KeyRing

    info, key = guard(lambda: KeyRing(Layout(_root(root))).create(user))
    typer.echo(
        f"Created key {info.id} for user {info.user!r}. It is not stored; keep it now:", err=True
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list(root: RootOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (ids and users; keys themselves are never stored)."""
    from .keys import KeyRing

    keys = KeyRing(Layout(_root(root))).list()
    if as_json:
        _out_json([k.__dict__ for k in keys])
        return
    for k in keys:
        typer.echo(f"{k.id}  {k.user}  {k.created_at}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id from `keys list`, or the key itself.")],
    root: RootOpt = None,
) -> None:
    """Revoke an API key."""
    from .keys import KeyRing

    for k in guard(lambda: KeyRing(Layout(_root(root))).revoke(key_id)):
        typer.echo(f"Revoked key {k.id} of user {k.user!r}.")


@app.command()
def init(root: RootOpt = None) -> None:
    """Create .memory/ with its README, .gitattributes and .gitignore (repairs what is missing)."""
    folder = _root(root)
    made = guard(Layout(folder).ensure)
    if made:
        typer.echo(f"Initialised {folder}: made {', '.join(made)}")
    else:
        typer.echo(f"{folder} is already set up; nothing to do.")


@app.command()
def verify(
    root: RootOpt = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Set torn tails and bad lines aside into quarantine.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check every log; exit 1 if damage is found. Changes nothing unless --repair."""
    from .verify import verify as run_verify

    folder = _root(root)
    report = run_verify(folder, repair=repair)
    if as_json:
        _out_json(report.view())
    else:
        for f in report.findings:
            where = f"{f.path}" + (f" @{f.offset}" if f.offset is not None else "")
            typer.echo(f"{f.level:<8} {f.kind:<22} {where}: {f.message}")
        for line in report.moved:
            typer.echo(f"repaired {line}")
        if repair:
            for line in report.unresolved:
                typer.echo(f"left     {line}")
        errors = sum(f.level == "error" for f in report.findings)
        warnings = sum(f.level == "warning" for f in report.findings)
        state = "damaged" if report.damaged else "clean"
        typer.echo(
            f"{folder}: {report.files} files, {report.events} events, {errors} errors, "
            f"{warnings} warnings: {state}"
            + (" (before repair)" if repair and report.moved else "")
        )
    failed = report.damaged and not (repair and report.moved and _clean_now(folder))
    if failed or (strict and any(f.level == "warning" for f in report.findings)):
        raise typer.Exit(1)


def _clean_now(folder: Path) -> bool:
    from .verify import verify as run_verify

    return not run_verify(folder).damaged


@app.command()
def hook(
    agent: Annotated[str, typer.Argument(help="The agent: claude-code.")],
) -> None:
    """Run as an agent's lifecycle hook: reads the hook JSON on stdin (always exits 0)."""
    from .integrations.claude_code import main as hook_main

    if agent != "claude-code":
        typer.echo(f"sessionmem: unknown agent {agent!r}; supported: claude-code", err=True)
        raise typer.Exit(0)  # a hook never fails the agent
    raise typer.Exit(hook_main([]))


@app.command()
def install(
    agent: Annotated[str, typer.Argument(help="The agent: claude-code.")],
    scope: Annotated[
        str, typer.Option(help="project (.claude/settings.json), local or user (~/.claude).")
    ] = "project",
    uninstall: Annotated[bool, typer.Option("--uninstall", help="Remove what was added.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Also save a checkpoint on Stop.")] = False,
    command: Annotated[
        str, typer.Option(help="The hook command (e.g. an absolute path to sessionmem).")
    ] = "sessionmem hook claude-code",
    project_dir: Annotated[
        Path | None, typer.Option("--project-dir", help="Default: CLAUDE_PROJECT_DIR or the cwd.")
    ] = None,
) -> None:
    """Install sessionmem's hooks into Claude Code's settings (idempotent)."""
    import shutil

    from .integrations import install as inst

    if agent != "claude-code":
        fail(f"unknown agent {agent!r}; supported: claude-code")
    project = project_dir or Path(os.environ.get("CLAUDE_PROJECT_DIR") or Path.cwd())
    path = guard(lambda: inst.settings_path(scope, project))
    if uninstall:
        removed = guard(lambda: inst.uninstall(path, command=command))
        typer.echo(
            f"Removed from {path}: {', '.join(removed)}"
            if removed
            else f"Nothing of sessionmem's in {path}."
        )
        return
    added = guard(lambda: inst.install(path, command=command, stop=stop))
    typer.echo(
        f"Added to {path}: {', '.join(added)}"
        if added
        else f"{path} already has sessionmem's hooks; nothing to do."
    )
    if command.split()[0] == "sessionmem" and shutil.which("sessionmem") is None:
        typer.echo(
            "Warning: `sessionmem` is not on PATH; pass --command with its full path.", err=True
        )
    typer.echo("Add this line to CLAUDE.md so the agent records its decisions:")
    typer.echo(inst.CLAUDE_MD_LINE)


# The commands that save and read memory live in their own module; importing it registers them.
from . import cli_memory  # noqa: E402,F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()
