"""What every engine's reads share: the checks of `get`'s arguments, `diff` made of two `get`s,
the cursors listings give out (opaque, URL-safe), the not-found answer for a session, and the
check of the filters."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from .codec import dumps, loads, normalize_uuid
from .diff import diff_data
from .errors import FieldError, InvalidInput, NotFound
from .layout import check_user
from .model import Diff, Filters, Snapshot
from .rules import check_event, check_session_id, check_snapshot_id, check_version


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


def check_get(
    user: str, session_id: str, version: int | str | None, snapshot_id: str | None
) -> tuple[int | None, str | None]:
    """`get`'s arguments, checked: (version, snapshot_id), at most one of them given."""
    check_user(user)
    check_session_id(session_id)
    if version is not None and snapshot_id is not None:
        raise InvalidInput(
            FieldError("version", "cannot be combined with snapshot_id; give one of them.")
        )
    return (
        check_version(version) if version is not None else None,
        check_snapshot_id(snapshot_id) if snapshot_id is not None else None,
    )


Get = Callable[..., Snapshot]  # an engine's get(user, session_id, version=, snapshot_id=)


def diff_of(
    get: Get, user: str, session_id: str, from_: int | str | None, to: int | str | None
) -> Diff:
    """What changed between two snapshots (versions or snapshot ids) of a session, read with
    the engine's `get`; by default from the previous snapshot to the latest."""
    check_session_id(session_id)
    latest = get(user, session_id)
    newer = _resolve(get, user, session_id, to, "to") if to is not None else latest
    if from_ is None:
        older = newer if newer.version < 2 else get(user, session_id, version=newer.version - 1)
    else:
        older = _resolve(get, user, session_id, from_, "from")
    return diff_data(older, newer)


def _resolve(get: Get, user: str, session_id: str, ref: int | str, name: str) -> Snapshot:
    if type(ref) is int or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
        return get(user, session_id, version=check_version(ref, name))
    sid = normalize_uuid(ref) if isinstance(ref, str) else None
    if sid is None:
        raise InvalidInput(
            FieldError(name, "must be a version number (1, 2, ...) or a snapshot id (a UUID).")
        )
    return get(user, session_id, snapshot_id=sid)
