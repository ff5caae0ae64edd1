"""sessionmem: self-hosted, git-native session memory for AI coding agents.

The names below load on first use, so `import sessionmem` costs nothing a command does not use
(the CLI and the hooks start in a few tens of milliseconds; `Client` alone pulls in httpx).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and editors see; at run time `__getattr__` loads them
    from .client import AsyncClient, Client
    from .errors import (
        ClientError,
        Conflict,
        InvalidInput,
        NotFound,
        SessionmemError,
        StorageError,
        Unauthorized,
    )
    from .model import Diff, HistoryEntry, Page, SessionSummary, Snapshot
    from .store import Store

_WHERE = {
    "AsyncClient": "client",
    "Client": "client",
    "ClientError": "errors",
    "Conflict": "errors",
    "InvalidInput": "errors",
    "NotFound": "errors",
    "SessionmemError": "errors",
    "StorageError": "errors",
    "Unauthorized": "errors",
    "Diff": "model",
    "HistoryEntry": "model",
    "Page": "model",
    "SessionSummary": "model",
    "Snapshot": "model",
    "Store": "store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sessionmem' has no attribute {name!r}")

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is an ordinary one
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Conflict",
    "Diff",
    "HistoryEntry",
    "InvalidInput",
    "NotFound",
    "Page",
    "SessionSummary",
    "SessionmemError",
    "Snapshot",
    "StorageError",
    "Store",
    "Unauthorized",
    "__version__",
]
