"""The one place that turns events into bytes and back (docs/storage.md, "The line format").

A line is orjson with sorted keys, compact, UTF-8, `\\n`-terminated; orjson refuses NaN and
Infinity on the way in, so no such value can be stored.

`decode` is total: whatever bytes a log holds (from git, an editor, another clone), it returns an
`Event` whose every field has the type and range the rest of the store relies on, or raises
`DecodeError` naming what is wrong — never anything else. Every reader (the fold's fast path, the
fold child, `verify`, the writer looking for its last seq) accepts exactly what it accepts.
"""

from __future__ import annotations

import os
import random
import re
import time
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, NamedTuple

import orjson

from .names import SESSION_RE, USER_RE, WRITER_RE

SCHEMA_VERSION = 1
EVENT_TYPES = ("snapshot", "delete")
_DUMP_OPTS = orjson.OPT_SORT_KEYS
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_TS_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")
MS_DIGITS = frozenset(f"{n:03d}" for n in range(1000))  # the fold's fast path checks ts[20:23]
BOM = b"\xef\xbb\xbf"
# A seq is dense per writer, so it never comes near this; the bound keeps `seq + 1` inside the
# 64-bit columns of the projection and exact for JSON readers that hold numbers as doubles.
MAX_SEQ = (1 << 53) - 1
# A line longer than this is not one we wrote (a snapshot encodes to at most 1 MiB).
MAX_LINE_BYTES = 64 << 20
# The fields of a snapshot's data that readers use, and the types they must have in a log line.
LIST_FIELDS = ("files_modified", "commands_run", "key_decisions", "open_tasks")
SCALAR_FIELDS = ("project_path", "git_branch", "git_commit")
SNAPSHOT_EVENTS = ("pre_compact", "session_end", "checkpoint")


class DecodeError(ValueError):
    """A log line that is not a valid event; the reader skips and reports it."""


class Event(NamedTuple):
    id: str
    type: str
    user: str
    session_id: str
    writer: str
    seq: int
    ts: str
    data: dict[str, Any]
    idem: str | None = None  # sha256 of the Idempotency-Key header, when one was sent
    body: str | None = None  # sha256 of the canonical request body, with idem
    v: int = SCHEMA_VERSION

    @property
    def ts_ms(self) -> int:
        return ts_to_ms(self.ts)


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, compact), no newline."""
    return orjson.dumps(value, option=_DUMP_OPTS)


def dumps_view(value: Any) -> bytes:
    """JSON for answers (HTTP, --json): compact, keys in the order the contract lists them."""
    return orjson.dumps(value)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def encode(event: Event) -> bytes:
    record: dict[str, Any] = {
        "v": event.v,
        "id": event.id,
        "type": event.type,
        "user": event.user,
        "session_id": event.session_id,
        "writer": event.writer,
        "seq": event.seq,
        "ts": event.ts,
        "data": event.data,
    }
    if event.idem is not None:
        record["idem"] = event.idem
    if event.body is not None:
        record["body"] = event.body
    return orjson.dumps(record, option=_DUMP_OPTS | orjson.OPT_APPEND_NEWLINE)


def decode(line: bytes) -> Event:
    """Parse and check one line (with or without its newline; a leading BOM and a CRLF end are
    read as the event they hold — `verify` warns about them)."""
    if len(line) > MAX_LINE_BYTES:
        raise DecodeError(f"line of {len(line)} bytes is longer than any event ({MAX_LINE_BYTES})")
    if line.startswith(BOM):
        line = line[3:]
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    return event_from_record(raw)


def event_from_record(raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise DecodeError("not a JSON object")
    v = raw.get("v")
    if v != SCHEMA_VERSION:
        # Future schema versions are upgraded here at read time ("upcasting", as event stores do).
        raise DecodeError(f"unsupported schema version {v!r}")
    try:
        ev = Event(
            id=raw["id"],
            type=raw["type"],
            user=raw["user"],
            session_id=raw["session_id"],
            writer=raw["writer"],
            seq=raw["seq"],
            ts=raw["ts"],
            data=raw["data"],
            idem=raw.get("idem"),
            body=raw.get("body"),
        )
    except KeyError as exc:
        raise DecodeError(f"missing field {exc.args[0]!r}") from None
    if not isinstance(ev.id, str) or not UUID_RE.match(ev.id):
        raise DecodeError("id is not a lowercase UUID")
    if ev.type not in EVENT_TYPES:
        raise DecodeError(f"unknown type {ev.type!r}")
    if not isinstance(ev.user, str) or not USER_RE.match(ev.user):
        raise DecodeError("invalid user")
    if not isinstance(ev.session_id, str) or not SESSION_RE.match(ev.session_id):
        raise DecodeError("invalid session_id")
    if not isinstance(ev.writer, str) or not WRITER_RE.match(ev.writer):
        raise DecodeError("invalid writer")
    if type(ev.seq) is not int or not 1 <= ev.seq <= MAX_SEQ:
        raise DecodeError(f"seq is not an integer from 1 to {MAX_SEQ}")
    if not isinstance(ev.ts, str) or not _TS_RE.match(ev.ts):
        raise DecodeError("ts is not ISO-8601 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)")
    try:
        ms = ts_to_ms(ev.ts)
    except (ValueError, OverflowError):
        raise DecodeError(f"ts {ev.ts} is not a valid time") from None
    if ms < 0:
        raise DecodeError(f"ts {ev.ts} is before 1970")
    if not isinstance(ev.data, dict):
        raise DecodeError("data is not an object")
    if ev.type == "snapshot":
        problem = data_problem(ev.data)
        if problem is not None:
            raise DecodeError(problem)
    if not (ev.idem is None or type(ev.idem) is str) or not (
        ev.body is None or type(ev.body) is str
    ):
        raise DecodeError("idem and body must be strings when present")
    return ev


def data_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a stored snapshot's data for the readers that use it, or None.

    Only the fields the store reads are checked; others are kept as the client sent them. (On
    the cold fold's path for every line: written for speed, ~1 us.)"""
    get = data.get
    for name in LIST_FIELDS:
        value = get(name)
        if value is not None and (
            type(value) is not list or not all(map(isinstance, value, repeat(str)))
        ):
            return f"data.{name} is not a list of strings"
    for name in SCALAR_FIELDS:
        value = get(name)
        if value is not None and type(value) is not str:
            return f"data.{name} is not a string"
    event = get("event")  # any string: a newer version may know more events than these
    if event is not None and type(event) is not str:
        return "data.event is not a string"
    metadata = get("metadata")
    if metadata is not None and type(metadata) is not dict:
        return "data.metadata is not an object"
    return None


# --- time and ids -------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The last second formatted and parsed, one tuple each (replaced whole: safe across threads).
_formatted: tuple[int, str] = (-1, "")
_parsed: tuple[str, int] = ("", 0)


def ms_to_ts(ms: int) -> str:
    global _formatted
    seconds, stamp = _formatted
    if seconds != ms // 1000:
        seconds = ms // 1000
        stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _formatted = (seconds, stamp)
    return f"{stamp}.{ms % 1000:03d}Z"


def ts_to_ms(ts: str) -> int:
    global _parsed
    if ts[-1] != "Z" or ts[19] != ".":
        raise ValueError(ts)
    prefix, base = _parsed
    if prefix != ts[:19]:
        prefix = ts[:19]
        base = int(datetime.fromisoformat(prefix).replace(tzinfo=UTC).timestamp()) * 1000
        _parsed = (prefix, base)
    return base + int(ts[20:23])


class _Random:
    """80 random bits per id from a generator seeded by the OS once per process (and again in
    a forked child, which would otherwise repeat its parent's ids): ids need uniqueness, not
    secrecy, and a system call per id was a measurable part of a save."""

    def __init__(self) -> None:

        self._gen = random.Random(os.urandom(32))
        self.bits = self._gen.getrandbits
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._gen.seed(os.urandom(32))


_random: _Random | None = None  # made once a process makes many ids (a CLI save makes one)
_ids_made = 0


def uuid7(ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then randomness."""
    global _random, _ids_made
    ms = now_ms() if ms is None else ms
    if _random is not None:
        rand = _random.bits(80)
    else:
        _ids_made += 1
        if _ids_made >= 16:
            _random = _Random()
        rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_ANY_UUID_RE = re.compile(
    r"(?:urn:uuid:)?\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?\Z",
    re.IGNORECASE | re.ASCII,
)


def normalize_uuid(value: str) -> str | None:
    """The canonical lowercase form of a UUID string (the forms Python's `uuid.UUID` reads), or
    None if it is not one. (A regular expression: the `uuid` module costs ~20 ms to import.)"""
    match = _ANY_UUID_RE.match(value) if isinstance(value, str) else None
    return "-".join(match.groups()).lower() if match else None


def id_hash(event_id: str) -> int:
    """A compact 63-bit stand-in for an event id (its random low bits), kept per row in memory."""
    return int(event_id[-17:].replace("-", ""), 16) & 0x7FFF_FFFF_FFFF_FFFF
