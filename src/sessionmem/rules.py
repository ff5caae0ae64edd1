"""The rule book: every constant and every check of what comes in, in one place (docs/http.md and
docs/decisions.md, "The HTTP edge"). `Store` applies them; the HTTP routes, the client, the CLI
and the MCP tools pass what they are given through unchanged, so every surface refuses the same
input with the same words (each may add its own hint after them: a flag, an endpoint).

Each check takes what a surface may hand it — an int from Python, a string from a query or a
command line — and returns the checked value, or raises `InvalidInput` naming the field.
"""

from __future__ import annotations

from typing import Any

from .codec import SNAPSHOT_EVENTS, normalize_uuid
from .errors import FieldError, InvalidInput
from .names import SESSION_RE

PREFIX = "/api/v1/public/memory/v2"  # the HTTP API's base path (docs/http.md)
DEFAULT_EVENT = "checkpoint"
EVENTS_TEXT = ", ".join(SNAPSHOT_EVENTS)
RESERVED_SESSION_ID = "latest"  # GET /session/latest would shadow it
MAX_LIMIT = 1000  # items in one page of a listing
IDEMPOTENCY_KEY_CHARS = 255
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1  # integers round-trip exactly within these
MAX_VERSION_DIGITS = 18  # any version a log can hold; a longer number is refused unparsed
DURABILITY_MODES = ("durable", "fast")

__all__ = [
    "DEFAULT_EVENT",
    "DURABILITY_MODES",
    "IDEMPOTENCY_KEY_CHARS",
    "INT_MAX",
    "INT_MIN",
    "MAX_LIMIT",
    "PREFIX",
    "RESERVED_SESSION_ID",
    "SNAPSHOT_EVENTS",
    "check_durability",
    "check_event",
    "check_idempotency_key",
    "check_limit",
    "check_session_id",
    "check_snapshot_id",
    "check_version",
]


def check_session_id(value: Any, field_name: str = "session_id") -> str:
    if not isinstance(value, str):
        raise InvalidInput(FieldError(field_name, "must be a string."))
    if not SESSION_RE.match(value):
        raise InvalidInput(
            FieldError(
                field_name,
                "must be 1-128 characters matching [A-Za-z0-9][A-Za-z0-9._:@-]* "
                "(it travels in URL paths).",
            )
        )
    return value


def check_event(value: Any, field_name: str = "event") -> str:
    """One of the snapshot events (a filter, or a snapshot's own event)."""
    if value not in SNAPSHOT_EVENTS:
        shown = f"; got {value!r}" if isinstance(value, str) and len(value) <= 40 else ""
        raise InvalidInput(FieldError(field_name, f"must be one of {EVENTS_TEXT}{shown}."))
    return str(value)


def check_limit(value: Any) -> int:
    """How many items a page holds: 1 to MAX_LIMIT (an int, or a string of ASCII digits)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_LIMIT:
        raise InvalidInput(FieldError("limit", f"must be an integer from 1 to {MAX_LIMIT}."))
    return value


DURATION_UNITS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def check_duration(value: Any, name: str = "older_than") -> int:
    """A duration as a number and a unit (`90m`, `36h`, `30d`, `12w`), in milliseconds."""
    text = value.strip() if isinstance(value, str) else ""
    digits, unit = text[:-1], text[-1:]
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 6 and unit in DURATION_UNITS):
        raise InvalidInput(
            FieldError(name, "must be a number and a unit: m, h, d or w (90m, 36h, 30d, 12w).")
        )
    return int(digits) * DURATION_UNITS[unit]


def check_version(value: Any, name: str = "version") -> int:
    """A version number: an int from 1, or a string of ASCII digits (no sign, no '²')."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > MAX_VERSION_DIGITS:
            raise InvalidInput(
                FieldError(name, f"must be a whole number from 1 (got {len(value)} digits).")
            )
        value = int(value)
    if type(value) is not int or value < 1:
        raise InvalidInput(FieldError(name, "must be a whole number from 1."))
    return value


def check_snapshot_id(value: Any, name: str = "snapshot_id") -> str:
    sid = normalize_uuid(value) if isinstance(value, str) else None
    if sid is None:
        raise InvalidInput(FieldError(name, "must be a snapshot id (a UUID)."))
    return sid


def check_idempotency_key(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= IDEMPOTENCY_KEY_CHARS:
        raise InvalidInput(
            FieldError(
                "Idempotency-Key", f"must be 1-{IDEMPOTENCY_KEY_CHARS} characters when sent."
            )
        )
    return value


def check_durability(value: Any) -> str:
    if value not in DURABILITY_MODES:
        raise InvalidInput(
            FieldError("durability", f"must be one of {', '.join(DURABILITY_MODES)}.")
        )
    return str(value)
