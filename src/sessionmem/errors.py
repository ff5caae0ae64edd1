"""Every exception sessionmem raises on purpose.

    SessionmemError
    ├── InvalidInput          a field broke a rule (HTTP 422); `.errors` names each field
    ├── NotFound              no such session / version / key for this user (HTTP 404);
    │                         `.what` says what was missing, so each surface can add its hint
    ├── Conflict              an idempotency key or snapshot id reused with another body (HTTP 409)
    ├── Unauthorized          missing or unknown API key (HTTP 401)
    ├── StorageError          the log could not be written (disk full, permissions) (HTTP 503)
    │   ├── Stale             the log kept changing under a read (a git checkout?) (HTTP 503)
    │   └── DamagedKeyFile    keys.json cannot be read as keys; nothing is written over it
    ├── SyncError             a sync could not finish; nothing local was lost (`sessionmem sync`)
    │   └── GitError          a git command failed; the message is git's first meaningful line
    └── ClientError           raised by `sessionmem.Client` for an error answer from a server
        (`.status` and `.detail` carry what the server said; it is also the matching class
        above — a 404 is a `NotFound` — so code written against `Store` catches the same)

Messages are full sentences that say what happened, in the library's neutral words; each surface
adds its own hint of what to do (an endpoint over HTTP, a command or flag in the CLI): see
`hint`.
"""

from __future__ import annotations

import errno
import os
from typing import Any, NamedTuple


class SessionmemError(Exception):
    """The root of every sessionmem error."""


class FieldError(NamedTuple):
    field: str
    message: str

    def as_dict(self, where: str = "body") -> dict[str, Any]:
        parts = self.field.split(".")
        loc: list[Any] = [where, *(int(p) if p.isascii() and p.isdigit() else p for p in parts)]
        return {"loc": loc, "field": self.field, "msg": f"{self.field} {self.message}"}


class InvalidInput(SessionmemError):
    def __init__(self, errors: list[FieldError] | FieldError):
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        super().__init__(" ".join(f"{e.field} {e.message}" for e in self.errors))


class NotFound(SessionmemError):
    def __init__(self, message: str, *, what: str | None = None):
        super().__init__(message)
        self.what = what  # "session", "snapshot", "filters", "key", "folder" or None


class Conflict(SessionmemError):
    pass


class Unauthorized(SessionmemError):
    pass


class StorageError(SessionmemError):
    pass


class Stale(StorageError):
    """A log file changed under a read (a git checkout?) and kept changing while the read was
    tried again (HTTP 503: retry). `part` is the number of the part found changed, if known."""

    def __init__(self, where: int = 0, part: int | None = None):
        super().__init__(
            "The log changed during the read (a git checkout?) and kept changing. Retry."
        )
        self.where = where
        self.part = part


class DamagedKeyFile(StorageError):
    """keys.json cannot be read as a list of keys: nothing is written over it."""


class ClientError(SessionmemError):
    def __init__(self, status: int, detail: Any, url: str | None = None):
        self.status = status
        self.detail = detail
        self.url = url
        self.what: str | None = None
        if isinstance(detail, list):
            text = " ".join(str(d.get("msg") if isinstance(d, dict) else d) for d in detail)
            self.errors = [
                FieldError(str(d.get("field", "body")), str(d.get("msg", "")))
                for d in detail
                if isinstance(d, dict)
            ]
        else:
            text = str(detail)
            self.errors = []
        where = f" ({url})" if url else ""
        Exception.__init__(
            self, f"{text}{where}" if status == 0 else f"HTTP {status}{where}: {text}"
        )


class _ClientNotFound(ClientError, NotFound):
    pass


class _ClientInvalid(ClientError, InvalidInput):
    pass


class _ClientConflict(ClientError, Conflict):
    pass


class _ClientUnauthorized(ClientError, Unauthorized):
    pass


class _ClientStorage(ClientError, StorageError):
    pass


_BY_STATUS: dict[int, type[ClientError]] = {
    401: _ClientUnauthorized,
    404: _ClientNotFound,
    409: _ClientConflict,
    413: _ClientInvalid,
    422: _ClientInvalid,
    503: _ClientStorage,
}


def client_error(status: int, detail: Any, url: str | None = None) -> ClientError:
    """The ClientError for a server's error answer: also a NotFound for a 404, an InvalidInput
    for a 422 or 413, and so on, as `Store` would have raised."""
    return _BY_STATUS.get(status, ClientError)(status, detail, url)


def storage_error(doing: str, exc: OSError) -> StorageError:
    """The one error for a file system that failed us (read-only, no permission, no space, out
    of descriptors, I/O error...): what was being done, why, and that nothing was stored."""

    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    advice = {
        errno.ENOSPC: " Free some space, then retry.",
        errno.EDQUOT: " Free some space, then retry.",
        errno.EROFS: " The file system is read-only.",
        errno.EACCES: " Check the folder's owner and mode.",
        errno.EPERM: " Check the folder's owner and mode.",
        errno.EMFILE: " Too many open files: retry shortly.",
        errno.ENFILE: " Too many open files: retry shortly.",
        errno.ELOOP: " It is a link, and sessionmem never writes through links.",
    }.get(exc.errno or 0, "")
    failure = StorageError(f"Could not {doing}: {reason}. Nothing was stored.{advice}")
    failure.__cause__ = exc
    return failure


def hint(exc: BaseException, hints: dict[str, str]) -> str:
    """The error's message with the hint a surface gives for what was missing."""
    extra = hints.get(getattr(exc, "what", None) or "")
    return f"{exc} {extra}" if extra else str(exc)


__all__ = [
    "ClientError",
    "Conflict",
    "FieldError",
    "InvalidInput",
    "NotFound",
    "SessionmemError",
    "StorageError",
    "Unauthorized",
]


class SyncError(SessionmemError):
    """A sync that could not finish; nothing local is lost (the message says what to do)."""


class GitError(SyncError):
    """A git command failed; the message is its first meaningful line."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a driver's error can run to many), else its
    class's name."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
