"""Every exception sessionmem raises on purpose.

    SessionmemError
    ├── InvalidInput          a field broke a rule (HTTP 422); `.errors` names each field
    ├── NotFound              no such session / version / key for this user (HTTP 404)
    ├── Conflict              an idempotency key or snapshot id reused with another body (HTTP 409)
    ├── Unauthorized          missing or unknown API key (HTTP 401)
    ├── StorageError          the log could not be written (disk full, permissions)
    └── ClientError           raised by `sessionmem.Client` for an error answer from a server
        (`.status` and `.detail` carry what the server said)

Messages are full sentences that say what happened and what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SessionmemError(Exception):
    """The root of every sessionmem error."""


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self, where: str = "body") -> dict[str, Any]:
        loc: list[Any] = [where, *(int(p) if p.isdigit() else p for p in self.field.split("."))]
        return {"loc": loc, "field": self.field, "msg": f"{self.field} {self.message}"}


class InvalidInput(SessionmemError):
    def __init__(self, errors: list[FieldError] | FieldError):
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        super().__init__(" ".join(f"{e.field} {e.message}" for e in self.errors))


class NotFound(SessionmemError):
    pass


class Conflict(SessionmemError):
    pass


class Unauthorized(SessionmemError):
    pass


class StorageError(SessionmemError):
    pass


class ClientError(SessionmemError):
    def __init__(self, status: int, detail: Any):
        self.status = status
        self.detail = detail
        if isinstance(detail, list):
            text = " ".join(str(d.get("msg") if isinstance(d, dict) else d) for d in detail)
        else:
            text = str(detail)
        super().__init__(f"HTTP {status}: {text}")


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
