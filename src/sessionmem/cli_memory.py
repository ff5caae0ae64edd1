"""`sessionmem` commands that save and read memory: save, latest, show, history, diff, sessions,
delete. Registered on the app of `cli` (which imports this module)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli import (
    BranchOpt,
    EventOpt,
    JsonOpt,
    KeyOpt,
    ProjectOpt,
    RootOpt,
    UrlOpt,
    UserOpt,
    _console,
    _out_json,
    _root,
    app,
    backend,
    fail,
    guard,
)
from .codec import loads
from .errors import ClientError, SessionmemError
from .model import Diff, Page, Snapshot


@app.command()
def save(
    session_id: Annotated[str | None, typer.Option("--session-id", help="Session id.")] = None,
    event: Annotated[
        str | None, typer.Option(help="pre_compact, session_end or checkpoint.")
    ] = None,
    file: Annotated[
        list[str] | None, typer.Option("--file", help="A file modified (repeat).")
    ] = None,
    command: Annotated[list[str] | None, typer.Option("--command", help="A command run.")] = None,
    decision: Annotated[
        list[str] | None, typer.Option("--decision", help="A key decision.")
    ] = None,
    task: Annotated[list[str] | None, typer.Option("--task", help="An open task.")] = None,
    project_path: Annotated[str | None, typer.Option("--project-path")] = None,
    git_branch: Annotated[str | None, typer.Option("--git-branch")] = None,
    git_commit: Annotated[str | None, typer.Option("--git-commit")] = None,
    from_json: Annotated[
        str | None, typer.Option("--from-json", help="Read the body from FILE, or - for stdin.")
    ] = None,
    merge: Annotated[
        bool, typer.Option("--merge", help="Start from this session's latest snapshot.")
    ] = False,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    root: RootOpt = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Save a snapshot of a session. It replaces the last one unless --merge is given."""
    body: dict[str, Any] = {}
    if from_json:
        raw = sys.stdin.buffer.read() if from_json == "-" else Path(from_json).read_bytes()
        try:
            body = loads(raw)
        except ValueError as exc:
            fail(f"--from-json is not valid JSON ({exc}).")
        if not isinstance(body, dict):
            fail("--from-json must hold a JSON object.")
    if session_id:
        body["session_id"] = session_id
    if not body.get("session_id") and not url:
        body["session_id"] = _current_session(_root(root))
    if not body.get("session_id"):
        fail(
            "--session-id is required (or a session_id in --from-json); inside a Claude Code "
            "session with sessionmem's hooks it defaults to that session."
        )
    be = backend(root, url, api_key, user)
    if merge:
        try:
            base = be.get(body["session_id"]).session_data
        except (SessionmemError, ClientError):
            base = {}
        base = {k: v for k, v in base.items() if k != "event"}  # this save is its own event
        body = {**base, **body}
    lists = {
        "files_modified": file,
        "commands_run": command,
        "key_decisions": decision,
        "open_tasks": task,
    }
    for name, items in lists.items():
        if items:
            existing = list(body.get(name) or []) if merge or from_json else []
            body[name] = existing + [x for x in items if x not in existing]
    for name, value in (
        ("event", event),
        ("project_path", project_path),
        ("git_branch", git_branch),
        ("git_commit", git_commit),
    ):
        if value is not None:
            body[name] = value
    snap = guard(lambda: be.save(body, idempotency_key=idempotency_key))
    if as_json:
        _out_json(snap.view())
    else:
        typer.echo(f"Saved {snap.session_id} version {snap.version} ({snap.snapshot_id}).")


def _current_session(root: Path) -> str | None:
    """The session the SessionStart hook recorded last, if any."""
    try:
        record = loads((root / ".local" / "current-session.json").read_bytes())
    except (OSError, ValueError):
        return None
    value = record.get("session_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _print_snapshot(snap: Snapshot, fmt: str) -> None:
    from .render import briefing, plain

    if fmt == "json":
        _out_json(snap.view())
    elif fmt == "markdown":
        sys.stdout.write(briefing(snap))
    else:
        sys.stdout.write(plain(snap))


FormatOpt = Annotated[str, typer.Option("--format", help="text, markdown or json.")]


@app.command()
def latest(
    project_path: ProjectOpt = None,
    git_branch: BranchOpt = None,
    event: EventOpt = None,
    fmt: FormatOpt = "text",
    root: RootOpt = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the latest snapshot over all sessions (optionally of a project or branch)."""
    be = backend(root, url, api_key, user)
    snap = guard(lambda: be.latest(project_path=project_path, git_branch=git_branch, event=event))
    _print_snapshot(snap, "json" if as_json else fmt)


@app.command()
def show(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    version: Annotated[int | None, typer.Option(help="Replay this version.")] = None,
    snapshot_id: Annotated[
        str | None, typer.Option("--snapshot-id", help="Replay this one.")
    ] = None,
    fmt: FormatOpt = "text",
    root: RootOpt = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a session's latest snapshot, or the one at --version (replay)."""
    be = backend(root, url, api_key, user)
    snap = guard(lambda: be.get(session_id, version=version, snapshot_id=snapshot_id))
    _print_snapshot(snap, "json" if as_json else fmt)


@app.command()
def history(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    limit: Annotated[int, typer.Option(help="Entries per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the page before.")] = None,
    root: RootOpt = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a session's snapshots, newest first."""
    be = backend(root, url, api_key, user)
    page: Page = guard(lambda: be.history(session_id, limit=limit, cursor=cursor))
    if as_json:
        _out_json(page.view())
        return
    from rich.table import Table

    table = Table(
        "version",
        "created_at",
        "event",
        "tasks",
        "decisions",
        "files",
        "commands",
        "snapshot_id",
        box=None,
    )
    for e in page.items:
        c = e.counts
        table.add_row(
            str(e.version),
            e.created_at,
            e.event,
            str(c["open_tasks"]),
            str(c["key_decisions"]),
            str(c["files_modified"]),
            str(c["commands_run"]),
            e.snapshot_id,
        )
    _console().print(table)
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}")


@app.command()
def diff(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    from_: Annotated[str | None, typer.Argument(metavar="[FROM]", help="Version or id.")] = None,
    to: Annotated[
        str | None, typer.Argument(help="Version or snapshot id (default latest).")
    ] = None,
    root: RootOpt = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two snapshots (default: previous -> latest)."""
    be = backend(root, url, api_key, user)
    d: Diff = guard(lambda: be.diff(session_id, from_, to))
    if as_json:
        _out_json(d.view())
        return
    from rich.markup import escape

    console = _console()
    console.print(
        f"{d.session_id}: version {d.from_version} ({d.from_created_at}) -> "
        f"version {d.to_version} ({d.to_created_at})"
    )
    for name in d.added:
        if d.added[name] or d.removed[name]:
            console.print(f"{name}:")
            for item in d.removed[name]:
                console.print(f"[red]  - {escape(str(item))}[/red]")
            for item in d.added[name]:
                console.print(f"[green]  + {escape(str(item))}[/green]")
    for name, change in d.changed.items():
        console.print(f"{name}: {escape(repr(change['from']))} -> {escape(repr(change['to']))}")
    if d.empty:
        console.print("no changes")


@app.command()
def sessions(
    project_path: ProjectOpt = None,
    git_branch: BranchOpt = None,
    event: EventOpt = None,
    limit: Annotated[int, typer.Option(help="Sessions per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the page before.")] = None,
    root: RootOpt = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List your sessions, newest first, with their latest snapshot."""
    be = backend(root, url, api_key, user)
    page: Page = guard(
        lambda: be.sessions(
            project_path=project_path,
            git_branch=git_branch,
            event=event,
            limit=limit,
            cursor=cursor,
        )
    )
    if as_json:
        _out_json(page.view())
        return
    from rich.table import Table

    table = Table(
        "session_id", "version", "created_at", "event", "tasks", "branch", "project", box=None
    )
    for s in page.items:
        table.add_row(
            s.session_id,
            str(s.version),
            s.created_at,
            s.event,
            str(s.counts["open_tasks"]),
            s.git_branch or "",
            s.project_path or "",
        )
    _console().print(table)
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}")


@app.command()
def delete(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    root: RootOpt = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    user: UserOpt = None,
) -> None:
    """Hide a session from every read (appends a tombstone; nothing is erased)."""
    be = backend(root, url, api_key, user)
    hidden = guard(lambda: be.delete(session_id))
    typer.echo(f"Deleted session {session_id} ({hidden} versions hidden).")
