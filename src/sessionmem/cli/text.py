"""How the command line words things: errors with the CLI's hints, tables, plurals, colour."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import ClientError, InvalidInput, SessionmemError, hint


class UsageError(Exception):
    """A mistake in the command line itself (exit code 2)."""


class Failure(Exception):
    """A command that cannot go on; its message is the one `Error:` line (exit code 1)."""


# What a command-line user can do about a miss (the library's messages name no command).
HINTS = {
    "session": "`sessionmem sessions` lists them.",
    "snapshot": "`sessionmem save` saves one.",
    "filters": "Try without --project-path, --git-branch and --event.",
    "version": "`sessionmem history SESSION` lists its versions.",
    "key": "`sessionmem keys list` shows the ids.",
}
# The library names a field; the command line names the flag or argument that set it.
FLAGS = {
    "version": "--version",
    "snapshot_id": "--snapshot-id",
    "session_id": "SESSION",
    "from": "FROM",
    "to": "TO",
    "limit": "--limit",
    "cursor": "--cursor",
    "event": "--event",
    "project_path": "--project-path",
    "git_branch": "--git-branch",
    "git_commit": "--git-commit",
    "Idempotency-Key": "--idempotency-key",
    "base_url": "--url",
    "user": "--user",
    "durability": "--durability",
}


def describe(exc: SessionmemError, args: argparse.Namespace | None) -> str:
    """The one line a command-line user reads for a library error."""
    if isinstance(exc, ClientError) and exc.status == 401:
        return (
            f"The server at {getattr(args, 'url', None) or exc.url} refused the API key "
            "(unknown or revoked). Pass a valid one with --api-key or SESSIONMEM_API_KEY; "
            "create one on the server with `sessionmem keys create USER`."
        )
    if isinstance(exc, InvalidInput) and not isinstance(exc, ClientError):
        flags = (
            {**FLAGS, "session_id": "--session-id"} if args and args.run == "memory:save" else FLAGS
        )
        # The library's own words (every surface says the same), then where the CLI took it.
        return " ".join(
            f"{e.field} {e.message}"
            + (f" (given as {flags[e.field]})" if flags.get(e.field, e.field) != e.field else "")
            for e in exc.errors
        )
    text = hint(exc, HINTS)
    folder = getattr(args, "_folder", None)
    if folder is not None and getattr(exc, "what", None) in ("session", "snapshot", "filters",
                                                             "version"):  # fmt: skip
        text += f" (memory folder: {folder})"
    return text


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, as a terminal shows them."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        " " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        for cells in (headers, *rows)
    ]
    return "".join(line.rstrip() + "\n" for line in lines)


def colour(text: str, code: str) -> str:
    """ANSI colour on a terminal; plain text in a pipe or a file."""
    return f"\033[{code}m{text}\033[0m" if sys.stdout.isatty() else text


def out(text: str) -> None:
    sys.stdout.write(text)


def out_json(value: Any) -> None:
    # lazy: ..codec costs 12 ms at start-up
    from ..codec import dumps_view

    sys.stdout.write(dumps_view(value).decode() + "\n")
