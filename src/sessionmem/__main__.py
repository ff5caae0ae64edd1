"""`python -m sessionmem`: the same as the `sessionmem` command (hook commands fall back to it)."""

from .entry import main

main()
