"""The `sessionmem` command: a thin edge over `Store` (or over a server with `--url`).

Every command opens the store (or a client), calls one library function, and turns library errors
into one `Error:` line and a non-zero exit here, at the edge only. Agents
call it through their shell in the middle of their work, so it starts fast: the parser is the
standard library's `argparse`, and each command imports only what it uses (docs/decisions.md,
"The command line").

Exit codes: 0 done, 1 the library refused or found nothing (the message says why), 2 a usage
mistake (an unknown flag, a bad value), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import SessionmemError
from .parser import build_parser
from .text import Failure, UsageError, describe

__all__ = ["Failure", "UsageError", "build_parser", "main"]


def _run(spec: str) -> Callable[[argparse.Namespace], int | None]:
    module, name = spec.split(":")
    if module == "memory":
        # lazy: memory costs 18 ms at start-up
        from . import memory as mod
    elif module == "serving":
        # lazy: serving costs 20 ms at start-up
        from . import serving as mod  # type: ignore[no-redef]
    else:
        # lazy: admin costs 20 ms at start-up
        from . import admin as mod  # type: ignore[no-redef]
    fn: Callable[[argparse.Namespace], int | None] = getattr(mod, name)
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sessionmem ARGV...`; returns the exit code."""

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args = None
    try:
        args = parser.parse_args(argv)
        args._parser = parser  # (for a command that prints help: `keys` alone)
        if getattr(args, "run", None) is None:
            parser.print_help()
            return 0 if not argv else 2
        return _run(args.run)(args) or 0
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        _error(str(exc))
        return 2
    except Failure as exc:
        _error(str(exc))
        return 1
    except SessionmemError as exc:
        _error(describe(exc, args))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sessionmem history s | head`
        with _quiet():
            sys.stdout.close()
        return 0


def _error(message: str) -> None:
    red, plain = ("\033[31m", "\033[0m") if sys.stderr.isatty() else ("", "")
    sys.stderr.write(f"{red}Error: {message}{plain}\n")


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return True
