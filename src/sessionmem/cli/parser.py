"""The command line's parser: every command, its flags and their help (`build_parser`), built
with the standard library's `argparse` and only as far as one run needs (docs/decisions.md,
"The command line").

It is past our ~500-line habit: it is one table of declarations, every command after the other,
read top to bottom by whoever adds a flag; split, the commands would only be harder to find."""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable
from typing import Any, NoReturn

from .. import __version__
from .text import UsageError

SNAPSHOT_EVENTS = ("pre_compact", "session_end", "checkpoint")  # rules.SNAPSHOT_EVENTS: not
# imported, to keep the parser's start free of the codec (a test holds the two together)


# argparse asks gettext for a translation of each of its messages as a parser is built, and
# gettext searches the locale folders anew every time it finds none (~2 ms a start). Python
# ships no translations of argparse, so its messages are the same without the search.
argparse._ = str  # type: ignore[attr-defined]


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal's width (its own way imports shutil: ~2 ms)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ):
        if width is None:
            try:
                columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
            except (ValueError, OSError):
                columns = 80
            width = max(columns - 2, 20)
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        hint = self._did_you_mean(message)
        raise UsageError(f"{message}{hint} (see `{self.prog} --help`)")

    def _did_you_mean(self, message: str) -> str:
        """The nearest known flag or command to a mistyped one, as `; did you mean --task?`."""

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            known = re.findall(r"'([^']*)'", choice.group(2))
            words = [choice.group(1)]
        elif message.startswith("unrecognized arguments:"):
            known = self._flags()
            words = [w.split("=", 1)[0] for w in message.split(":", 1)[1].split()]
            words = [w for w in words if w.startswith("-")]
        else:
            return ""
        for word in words:
            near = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
            if near:
                return f"; did you mean {near[0]}?"
        return ""

    def _flags(self) -> list[str]:
        flags = [f for a in self._actions for f in a.option_strings]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, _Parser):
                        flags += sub._flags()
        return flags


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text[:6]) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds from 0 to 3600, not {text!r}"
        )
    return value


def _memory_options(p: argparse.ArgumentParser, *, json: bool = True) -> None:
    g = p.add_argument_group("where the memory is")
    g.add_argument(
        "--root",
        default=os.environ.get("SESSIONMEM_ROOT") or None,
        help="the memory folder itself (holding log/); default: SESSIONMEM_ROOT, else the "
        "nearest .memory/ upward, else the git top level's .memory/, else ./.memory",
    )
    g.add_argument(
        "--database",
        default=os.environ.get("SESSIONMEM_DATABASE") or None,
        metavar="URL",
        help="a postgresql:// database instead of a memory folder (SESSIONMEM_DATABASE)",
    )
    g.add_argument(
        "--url",
        default=os.environ.get("SESSIONMEM_URL") or None,
        help="talk to this server instead (SESSIONMEM_URL)",
    )
    g.add_argument(
        "--api-key",
        default=os.environ.get("SESSIONMEM_API_KEY") or None,
        help="API key for --url (SESSIONMEM_API_KEY)",
    )
    g.add_argument(
        "--user",
        help="user id when working on the folder directly; default: SESSIONMEM_USER, "
        "git's user.email, the OS user",
    )
    if json:
        p.add_argument("--json", action="store_true", help="machine-readable JSON output")


def _page_options(p: argparse.ArgumentParser, items: str, default: int) -> None:
    p.add_argument(
        "--limit", default=str(default), help=f"{items} per page, 1-1000 (default {default})"
    )
    p.add_argument("--cursor", help="next_cursor of the page before")


def _filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project-path", help="only this project")
    p.add_argument("--git-branch", help="only this git branch")
    p.add_argument(
        "--event",
        metavar="EVENT",
        help=f"only snapshots of this event: {', '.join(SNAPSHOT_EVENTS)}",
    )
    p.add_argument("--agent", help="only what this agent's hooks saved (claude-code, codex, ...)")


def _root_option(p: argparse.ArgumentParser, *, database: bool = False) -> None:
    p.add_argument(
        "--root",
        default=os.environ.get("SESSIONMEM_ROOT") or None,
        help="the memory folder itself; default as for the other commands",
    )
    if database:
        _database_option(p)


def _database_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        default=os.environ.get("SESSIONMEM_DATABASE") or None,
        metavar="URL",
        help="a postgresql:// database instead of a memory folder (SESSIONMEM_DATABASE)",
    )


class _Unbuilt:
    """Stands in for a command's parser that this run does not need (see `build_parser`)."""

    def __getattr__(self, name: str) -> Callable[..., _Unbuilt]:
        return lambda *args, **kwargs: self


def build_parser(only: str | None = None) -> _Parser:
    """The whole parser; with `only`, the arguments of that command alone (every command is
    still known by name): building all of them costs ~10 ms, a third of a start."""

    parser = _Parser(
        prog="sessionmem",
        description="Git-native session memory for AI coding agents.",
        epilog="`sessionmem COMMAND --help` tells more. Docs: README.md and docs/.",
    )
    parser.add_argument("--version", action="version", version=f"sessionmem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, run: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            sub.add_parser(name, help=help, add_help=False)
            return _Unbuilt()  # type: ignore[return-value]
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        return p

    # --- memory ---------------------------------------------------------------------------
    p = command(
        "save",
        "Save a snapshot of a session (it replaces the last one unless --merge).",
        "memory:save",
    )
    p.add_argument(
        "--session-id", help="the session; default: the Claude Code session the hooks recorded"
    )
    p.add_argument(
        "--event", metavar="EVENT", help=f"{', '.join(SNAPSHOT_EVENTS)} (default checkpoint)"
    )
    p.add_argument("--file", action="append", metavar="F", help="a file modified (repeat)")
    p.add_argument("--command", action="append", metavar="C", help="a command run (repeat)")
    p.add_argument("--decision", action="append", metavar="D", help="a key decision (repeat)")
    p.add_argument("--task", action="append", metavar="T", help="an open task (repeat)")
    p.add_argument(
        "--done",
        action="append",
        metavar="T",
        help="a task finished, or an item dropped: it leaves this and every later briefing "
        "(repeat)",
    )
    p.add_argument("--project-path", help="default: the git top level of the current folder")
    p.add_argument("--git-branch", help="default: the current branch")
    p.add_argument("--git-commit", help="default: the current commit")
    p.add_argument("--from-json", metavar="FILE", help="read the body from FILE, or - for stdin")
    p.add_argument("--merge", action="store_true", help="start from the session's latest snapshot")
    p.add_argument("--idempotency-key", help="a retry with the same key stores nothing new")
    _memory_options(p)

    p = command("latest", "Show the latest snapshot (of a project or branch).", "memory:latest")
    _filter_options(p)
    p.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="markdown is the briefing an agent gets at SessionStart",
    )
    _memory_options(p)

    p = command(
        "brief",
        "The briefing of this project: the latest work, and what earlier sessions left open.",
        "memory:brief",
    )
    p.add_argument("--project-path", help="default: the git top level of the current folder")
    p.add_argument("--git-branch", help="default: the current branch")
    p.add_argument("--session-id", help="brief from this session first (a resumed one)")
    _memory_options(p)

    p = command(
        "status",
        "Where memory goes here, which agents' hooks are installed, what they last did.",
        "admin:status",
    )
    p.add_argument("--project-dir", help="default: the git top level of the current folder")
    _memory_options(p)

    p = command("show", "Show a session's latest snapshot, or a past one.", "memory:show")
    p.add_argument("session_id", metavar="SESSION")
    p.add_argument("--version", metavar="N", help="replay this version")
    p.add_argument("--snapshot-id", help="replay this snapshot")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    _memory_options(p)

    p = command("history", "List a session's snapshots, newest first.", "memory:history")
    p.add_argument("session_id", metavar="SESSION")
    _page_options(p, "entries", 50)
    _memory_options(p)

    p = command(
        "diff", "What changed between two snapshots (default: previous -> latest).", "memory:diff"
    )
    p.add_argument("session_id", metavar="SESSION")
    p.add_argument("from_", metavar="FROM", nargs="?", help="version or snapshot id")
    p.add_argument("to", metavar="TO", nargs="?", help="version or snapshot id (default: latest)")
    _memory_options(p)

    p = command("sessions", "List your sessions, newest first.", "memory:sessions")
    _filter_options(p)
    _page_options(p, "sessions", 50)
    _memory_options(p)

    p = command(
        "search",
        "Search your snapshots' tasks, decisions, files and commands, best first.",
        "memory:search",
    )
    p.add_argument(
        "query",
        metavar="QUERY",
        help='words, "phrases", prefix*, and task: decision: file: command: scopes',
    )
    _filter_options(p)
    p.add_argument("--session-id", help="only this session")
    p.add_argument("--since", help="only snapshots from this UTC time (2026-12-01, ...)")
    p.add_argument("--until", help="only snapshots up to this UTC time")
    p.add_argument("--all-versions", action="store_true", help="every version, not only newest")
    _page_options(p, "hits", 20)
    _memory_options(p)

    p = command(
        "delete",
        "Hide a session from every read (a tombstone; nothing is erased).",
        "memory:delete",
    )
    p.add_argument("session_id", metavar="SESSION")
    _memory_options(p, json=False)

    p = command(
        "forget",
        "Erase a session, or a leaked string, from the log files, the index and the caches.",
        "memory:forget",
    )
    p.add_argument("session_id", metavar="SESSION", nargs="?", help="the session to erase")
    p.add_argument(
        "--text",
        metavar="STRING",
        help="replace STRING with [REDACTED] in every stored event instead (- reads it from "
        "stdin, out of your shell history)",
    )
    _memory_options(p)

    p = command(
        "prune",
        "Erase older versions of every session (each session's newest is always kept).",
        "memory:prune",
    )
    p.add_argument("--keep-versions", metavar="N", help="keep each session's newest N versions")
    p.add_argument("--older-than", metavar="DURATION", help="erase versions older than 90d, 12w…")
    _memory_options(p)

    # --- the folder, the server, the agents -----------------------------------------------------
    p = command(
        "init", "Create .memory/ with its README, .gitattributes and .gitignore.", "admin:init"
    )
    _root_option(p)

    p.add_argument(
        "--sync-branch",
        action="store_true",
        help="memory travels on a branch of its own (`sessionmem sync`): this branch ignores "
        ".memory/log/ and .memory/erased/",
    )

    p = command(
        "sync",
        "Send and receive memory through the remote's memory branch (git plumbing only: the "
        "working tree, the index, HEAD and your branches stay as they are).",
        "admin:sync",
    )
    _root_option(p)
    p.add_argument("--remote", default="origin", help="the git remote (default origin)")
    p.add_argument("--branch", default="sessionmem", help="the memory branch (default sessionmem)")
    p.add_argument(
        "--status",
        action="store_true",
        help="events only here, only on the remote, and when the last sync happened",
    )
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.add_argument("--from-hook", action="store_true", help=argparse.SUPPRESS)

    p = command(
        "mcp",
        "Serve this memory to an agent as MCP tools over stdio (its stdin and stdout).",
        "admin:mcp",
    )
    _memory_options(p, json=False)

    p = command("serve", "Serve the memory folder over HTTP (FastAPI on uvicorn).", "serving:serve")
    _root_option(p, database=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_port,
        default=os.environ.get("SESSIONMEM_PORT") or "8765",
        help="port (default 8765, or SESSIONMEM_PORT)",
    )
    p.add_argument("--workers", type=_count, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--durability",
        choices=("durable", "fast"),
        default=None,
        help="durable: fsync before answering (default); fast: no fsync",
    )
    p.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="watch the logs for other writers (default on)",
    )
    p.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="log every request (default off: see docs/decisions.md)",
    )
    p.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
    )
    g = p.add_argument_group('connections (docs/decisions.md, "Connections")')
    g.add_argument(
        "--max-connections",
        type=_count,
        help="connections served at once; more get a quick 503 (default: the descriptor limit "
        "less 48, at most 10,000)",
    )
    g.add_argument(
        "--header-timeout",
        type=_seconds,
        default=10.0,
        help="seconds a request's headers may take to arrive (default 10)",
    )
    g.add_argument(
        "--body-timeout",
        type=_seconds,
        default=30.0,
        help="seconds a request body may stall between two chunks (default 30)",
    )
    g.add_argument(
        "--keep-alive-timeout",
        type=_count,
        default=5,
        help="seconds an idle keep-alive connection stays open (default 5)",
    )
    p.add_argument(
        "--background",
        action="store_true",
        help="start it detached, wait until it answers, say where it listens and how to stop it "
        "(its log: .memory/.local/serve.log)",
    )
    p.add_argument("--stop", action="store_true", help="stop the server --background started")

    p = command(
        "ui",
        "See what your agents remember: the web page of this memory on 127.0.0.1, with a "
        "one-time sign-in link.",
        "serving:ui",
    )
    _root_option(p, database=True)
    p.add_argument("--user", help="who signs in (default as for the other commands)")
    p.add_argument(
        "--port",
        type=_port,
        default=os.environ.get("SESSIONMEM_UI_PORT") or "8766",
        help="port (default 8766, or SESSIONMEM_UI_PORT; another free one when it is taken)",
    )
    p.add_argument(
        "--browser",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="open the link in a browser when there is one (default on)",
    )

    keys = command("keys", "Create, list and revoke API keys.", "admin:keys_help")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=_Parser)
    p = ksub.add_parser("create", help="create a key for USER and print it (shown only once)")
    p.add_argument("user", metavar="USER")
    p.set_defaults(run="admin:keys_create")
    _root_option(p, database=True)
    p = ksub.add_parser("list", help="list keys (ids and users; keys themselves are not stored)")
    p.set_defaults(run="admin:keys_list")
    _root_option(p, database=True)
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p = ksub.add_parser("revoke", help="revoke a key by its id (or a prefix of 8+), or the key")
    p.add_argument("key_id", metavar="ID")
    p.set_defaults(run="admin:keys_revoke")
    _root_option(p, database=True)

    p = command(
        "copy",
        "Copy every user's memory between a memory folder and a database (either way).",
        "admin:copy",
    )
    p.add_argument("source", metavar="FROM", help="a memory folder, or a postgresql:// URL")
    p.add_argument("target", metavar="TO", help="a memory folder, or a postgresql:// URL")

    db = command("db", "The PostgreSQL database: its schema.", "admin:db_help")
    dsub = db.add_subparsers(dest="db_command", metavar="ACTION", parser_class=_Parser)
    p = dsub.add_parser("upgrade", help="create the schema, or move it to this version's")
    p.set_defaults(run="admin:db_upgrade")
    _database_option(p)

    p = command(
        "verify",
        "Check every log; exit 1 on damage. Changes nothing unless --repair.",
        "admin:verify",
    )
    _root_option(p)
    p.add_argument("--repair", action="store_true", help="set damage aside into quarantine")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")

    p = command(
        "hook", "Run as an agent's lifecycle hook (reads its JSON on stdin; exits 0).", "admin:hook"
    )
    p.add_argument("agent", metavar="AGENT", help="claude-code, codex, gemini or cursor")
    p.add_argument("--sync", action="store_true", help="sync in the background after a session")

    p = command(
        "install", "Add (or remove) sessionmem's hooks in an agent's settings.", "admin:install"
    )
    p.add_argument(
        "--sync",
        action="store_true",
        help="after a session, `sessionmem sync` in the background (never blocks the agent)",
    )
    p.add_argument(
        "agent",
        metavar="AGENT",
        choices=("claude-code", "codex", "gemini", "cursor"),
        help="claude-code, codex, gemini or cursor",
    )
    p.add_argument(
        "--scope",
        choices=("project", "local", "user"),
        default="project",
        help="project: the agent's file in this project (default; .claude/settings.json, "
        ".codex/hooks.json, .gemini/settings.json, .cursor/hooks.json); user: the same under "
        "your home; local (Claude Code only): .claude/settings.local.json",
    )
    p.add_argument("--uninstall", action="store_true", help="remove what was added")
    p.add_argument("--stop", action="store_true", help="also save a checkpoint on every Stop")
    p.add_argument(
        "--mcp",
        action="store_true",
        help="also register `sessionmem mcp` in the project's .mcp.json (tools the agent calls)",
    )
    p.add_argument(
        "--command",
        dest="hook_command",
        help="the hook command; default: this sessionmem's absolute path + ' hook claude-code'",
    )
    p.add_argument("--project-dir", help="default: CLAUDE_PROJECT_DIR, else the git top level")
    return parser
