"""sessionmem: self-hosted, git-native session memory for AI coding agents."""

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

__version__ = "0.1.0"


def __getattr__(name: str):  # the client pulls in httpx: load it only when asked for
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'sessionmem' has no attribute {name!r}")


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
