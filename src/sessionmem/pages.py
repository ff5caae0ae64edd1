"""What every engine's listings share: the cursors they give out (opaque, URL-safe), the
not-found answer for a session, and the check of the filters."""

from __future__ import annotations

import base64
from typing import Any

from .codec import dumps, loads
from .errors import FieldError, InvalidInput, NotFound
from .model import Filters
from .rules import check_event


def no_session(session_id: str, user: str) -> NotFound:
    return NotFound(f"No session {session_id!r} for user {user!r}.", what="session")


def check_filters(filters: Filters) -> Filters:
    if filters.event is not None:
        check_event(filters.event)
    return filters


def cursor_value_ok(kind: str, value: Any) -> bool:
    """A version (from 1) for "v", a position among the matches (from 1) for "q", a session
    head's key (ts, writer, seq, id hash) for "s"."""
    if kind in ("v", "q"):
        return type(value) is int and value >= 1
    return (
        type(value) is list
        and len(value) == 4
        and type(value[0]) is int
        and type(value[1]) is str
        and type(value[2]) is int
        and type(value[3]) is int
    )


def encode_cursor(kind: str, value: Any) -> str:

    raw = dumps([kind, list(value) if isinstance(value, tuple) else value])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str) -> Any:
    if cursor is None:
        return None

    try:
        got, value = loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if got != kind or not cursor_value_ok(kind, value):
            raise ValueError(got)
        return value
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise InvalidInput(
            FieldError("cursor", "is not a cursor this listing gave out; omit it to start over.")
        ) from None
