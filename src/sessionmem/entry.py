"""The `sessionmem` console script. Hooks take a fast path that loads no command-line parser
and no web stack (a SessionEnd hook has about a second, shared with every other hook)."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) == 2 and argv[0] == "hook":
        # lazy: .integrations.hooks costs 10 ms at start-up
        from .integrations.hooks import main as hook_main

        sys.exit(hook_main(argv[1:]))
    # lazy: .cli costs 4 ms at start-up
    from .cli import main as cli_main

    sys.exit(cli_main(argv))


if __name__ == "__main__":
    main()
