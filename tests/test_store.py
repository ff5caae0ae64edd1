"""The Store contract (tests/contract.py) over every engine (`conftest.ENGINES`)."""

from __future__ import annotations

from contract import StoreContract


class TestEngine(StoreContract):
    """The engine itself, as `Store` callers and every surface see it."""
