"""Domain values (immutable records) and the rules a snapshot must follow (docs/http.md).

The rules live here, in the library, so every surface — HTTP, CLI, hooks, Python — refuses the
same input with the same message naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypedDict

import orjson

from .codec import (
    LIST_FIELDS,
    SCALAR_FIELDS,
    dumps,
    dumps_view,
    normalize_uuid,
)
from .errors import FieldError, InvalidInput
from .rules import (
    DEFAULT_EVENT,
    INT_MAX,
    INT_MIN,
    RESERVED_SESSION_ID,
    check_event,
    check_session_id,
)

MAX_LIST_ITEMS = 10_000
MAX_ITEM_CHARS = 65_536
MAX_METADATA_BYTES = 64 * 1024
MAX_DATA_BYTES = 1024 * 1024
# metadata and the fields we do not know are kept as sent, within these bounds: what a stored
# snapshot may cost to parse, hold and answer stays small whatever it contains.
MAX_EXTRA_VALUES = 10_000  # JSON values (objects, arrays, strings, numbers...) in all of them
MAX_DEPTH = 32


def normalize_snapshot(body: Any) -> tuple[str, str | None, dict[str, Any]]:
    """Check a snapshot body; return (session_id, client snapshot_id or None, data to store).

    Every error found is reported at once, each naming its field and the rule it broke.
    """
    if not isinstance(body, Mapping):
        raise InvalidInput(FieldError("body", "must be a JSON object."))
    errors: list[FieldError] = []
    session_id = body.get("session_id")
    if session_id is None:
        errors.append(FieldError("session_id", "is required."))
    else:
        try:
            check_session_id(session_id)
        except InvalidInput as exc:
            errors.extend(exc.errors)
        if session_id == RESERVED_SESSION_ID:
            errors.append(
                FieldError(
                    "session_id", "'latest' is reserved (GET /session/latest); pick another."
                )
            )
    snapshot_id = body.get("snapshot_id")
    if snapshot_id is not None:
        norm = normalize_uuid(snapshot_id) if isinstance(snapshot_id, str) else None
        if norm is None:
            errors.append(FieldError("snapshot_id", "must be a UUID, e.g. from uuid.uuid7()."))
        snapshot_id = norm
    data: dict[str, Any] = {}
    budget = [MAX_EXTRA_VALUES]
    for name, value in body.items():
        if not isinstance(name, str):
            errors.append(FieldError("body", "field names must be strings."))
            continue
        if name in ("session_id", "snapshot_id"):
            continue
        if name in LIST_FIELDS:
            data[name] = _check_list(name, value, errors)
        elif name in SCALAR_FIELDS:
            if value is not None and not isinstance(value, str):
                errors.append(FieldError(name, "must be a string or null."))
            elif isinstance(value, str) and len(value) > MAX_ITEM_CHARS:
                errors.append(FieldError(name, f"must be at most {MAX_ITEM_CHARS} characters."))
            data[name] = value
        elif name == "event":
            if value is None:
                value = DEFAULT_EVENT
            try:
                check_event(value)
            except InvalidInput as exc:
                errors.extend(exc.errors)
            data[name] = value
        elif name == "metadata":
            if value is not None and not isinstance(value, Mapping):
                errors.append(FieldError("metadata", "must be a JSON object or null."))
            elif (
                value is not None
                and _measure(value, name, errors, budget) is not None
                and len(_encode(value, name, errors)) > MAX_METADATA_BYTES
            ):
                errors.append(
                    FieldError("metadata", f"must encode to at most {MAX_METADATA_BYTES} bytes.")
                )
            data[name] = value
        else:
            # kept as sent, but it must be storable JSON within the bounds
            if _measure(value, name, errors, budget) is not None:
                _encode(value, name, errors)
            data[name] = value
    for name in LIST_FIELDS:
        data.setdefault(name, [])
    data.setdefault("project_path", None)
    data.setdefault("event", DEFAULT_EVENT)
    if not errors and len(_encode(data, "body", errors)) > MAX_DATA_BYTES:
        errors.append(FieldError("body", "the snapshot must encode to at most 1 MiB."))
    if errors:
        raise InvalidInput(errors)
    return str(session_id), snapshot_id, data


def _check_list(name: str, value: Any, errors: list[FieldError]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(FieldError(name, "must be a list of strings."))
        return []
    if len(value) > MAX_LIST_ITEMS:
        errors.append(FieldError(name, f"must have at most {MAX_LIST_ITEMS} items."))
    for i, item in enumerate(value):
        if not isinstance(item, str):
            errors.append(FieldError(f"{name}.{i}", "must be a string."))
            break
        if len(item) > MAX_ITEM_CHARS:
            errors.append(
                FieldError(f"{name}.{i}", f"must be at most {MAX_ITEM_CHARS} characters.")
            )
            break
    return value


def _measure(value: Any, name: str, errors: list[FieldError], budget: list[int]) -> Any:
    """Walk a kept-as-sent value within the bounds: at most MAX_EXTRA_VALUES values in all (the
    walk stops there, so a hostile body costs a bounded time), nested at most MAX_DEPTH deep,
    integers within the signed 64-bit range. Returns None (and names the rule) if it breaks one."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            errors.append(
                FieldError(
                    name,
                    f"is over the limit of {MAX_EXTRA_VALUES} JSON values in metadata and extra "
                    "fields together.",
                )
            )
            return None
        kind = type(item)
        if kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                errors.append(FieldError(name, f"is nested deeper than {MAX_DEPTH} levels."))
                return None
            stack.extend((v, depth + 1) for v in (item.values() if kind is dict else item))
        elif kind is int and not INT_MIN <= item <= INT_MAX:
            errors.append(
                FieldError(
                    name,
                    f"holds the integer {item}, outside the signed 64-bit range ({INT_MIN} to "
                    f"{INT_MAX}); send it as a string.",
                )
            )
            return None
    return value


def _encode(value: Any, name: str, errors: list[FieldError]) -> bytes:
    try:
        return dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        errors.append(FieldError(name, f"is not storable JSON ({exc})."))
        return b""


class Snapshot:
    """One stored snapshot as every surface returns it (docs/http.md: the response shape).

    Immutable, and it carries its JSON: `json()` is byte for byte what the HTTP API answers,
    made once. One read from the store's answer cache holds only that JSON; its fields are
    parsed on first use. A plain class, not a dataclass: the CLI starts in tens of
    milliseconds, and the dataclasses module alone costs ~10 ms to import."""

    __slots__ = (
        "session_id",
        "version",
        "snapshot_id",
        "event",
        "created_at",
        "session_data",
        "_json",
    )
    session_id: str
    version: int
    snapshot_id: str
    event: str
    created_at: str
    session_data: dict[str, Any]

    def __init__(
        self,
        session_id: str,
        version: int,
        snapshot_id: str,
        event: str,
        created_at: str,
        session_data: dict[str, Any],
    ):
        setter = object.__setattr__
        setter(self, "session_id", session_id)
        setter(self, "version", version)
        setter(self, "snapshot_id", snapshot_id)
        setter(self, "event", event)
        setter(self, "created_at", created_at)
        setter(self, "session_data", session_data)
        setter(self, "_json", None)

    @classmethod
    def from_json(cls, raw: bytes) -> Snapshot:
        """A snapshot of which only the JSON is known yet (its fields parse on first use)."""
        snap = cls.__new__(cls)
        object.__setattr__(snap, "_json", raw)
        return snap

    def __getattr__(self, name: str) -> Any:
        # Only reached for a field not set yet: a snapshot made `from_json`.
        if name in Snapshot.__slots__[:-1]:
            full = Snapshot.from_view(orjson.loads(object.__getattribute__(self, "_json")))
            for field in Snapshot.__slots__[:-1]:
                object.__setattr__(self, field, object.__getattribute__(full, field))
            return object.__getattribute__(self, name)
        raise AttributeError(name)

    def json(self) -> bytes:
        """The snapshot as the HTTP API answers it (made on first use, then kept)."""
        raw: bytes | None = self._json
        if raw is None:
            raw = dumps_view(self.view())
            object.__setattr__(self, "_json", raw)
        return raw

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Snapshot is immutable; cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self.view() == other.view()

    def __hash__(self) -> int:
        return hash((self.session_id, self.snapshot_id, self.version))

    def __repr__(self) -> str:
        return (
            f"Snapshot(session_id={self.session_id!r}, version={self.version!r}, "
            f"snapshot_id={self.snapshot_id!r}, event={self.event!r}, "
            f"created_at={self.created_at!r}, session_data={self.session_data!r})"
        )

    @property
    def open_tasks(self) -> list[str]:
        return list(self.session_data.get("open_tasks") or [])

    def view(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "version": self.version,
            "snapshot_id": self.snapshot_id,
            "event": self.event,
            "created_at": self.created_at,
            "session_data": self.session_data,
        }

    @classmethod
    def from_view(cls, raw: Mapping[str, Any]) -> Snapshot:
        return cls(
            session_id=raw["session_id"],
            version=raw["version"],
            snapshot_id=raw["snapshot_id"],
            event=raw["event"],
            created_at=raw["created_at"],
            session_data=dict(raw["session_data"]),
        )

    def __getitem__(self, key: str) -> Any:
        # Agents written against the seed contract index the JSON: latest["session_data"][...]
        return self.view()[key]


def counts(data: Mapping[str, Any]) -> dict[str, int]:
    return {name: len(data.get(name) or []) for name in LIST_FIELDS}


class HistoryEntry(NamedTuple):
    version: int
    snapshot_id: str
    event: str
    created_at: str
    counts: dict[str, int]

    def view(self) -> dict[str, Any]:
        return self._asdict()  # (the JSON's keys are the fields, in order)


class SessionSummary(NamedTuple):
    session_id: str
    version: int
    snapshot_id: str
    event: str
    created_at: str
    project_path: str | None
    git_branch: str | None
    counts: dict[str, int]

    def view(self) -> dict[str, Any]:
        return self._asdict()


class Page(NamedTuple):
    """One page of a listing; pass `next_cursor` back as `cursor` for the next page."""

    items: list[Any]
    next_cursor: str | None = None

    def view(self) -> dict[str, Any]:
        return {"items": [i.view() for i in self.items], "next_cursor": self.next_cursor}


class Problem(NamedTuple):
    """A log line that was skipped while reading, and why."""

    path: str
    offset: int
    reason: str


class FilterArgs(TypedDict, total=False):
    """The filters of `latest`, `sessions` and `search`, the same names on every surface (a
    query parameter each over HTTP, a flag each in the CLI)."""

    project_path: str | None
    git_branch: str | None
    event: str | None
    agent: str | None  # metadata.agent: the agent whose hooks saved it


class SessionsArgs(FilterArgs, total=False):
    limit: int | str  # 1-1000 (rules.check_limit)
    cursor: str | None  # next_cursor of the page before


class SearchArgs(SessionsArgs, total=False):
    session_id: str | None
    since: str | None  # a UTC time from 1970 (2026-12-01, 2026-12-01T10:00:00Z)
    until: str | None
    all_versions: bool | None  # every version, not only each session's newest


class ProjectArgs(TypedDict, total=False):
    """The project view's arguments besides the project (`project.project_view`)."""

    git_branch: str | None  # the branch the new session is on (its items first)
    prefer: Iterable[str | None]  # sessions whose snapshot is the head when it holds work
    also: Iterable[str]  # other paths the project was saved under


class Filters(NamedTuple):
    project_path: str | None = None
    git_branch: str | None = None
    event: str | None = None
    agent: str | None = None  # metadata.agent: the agent whose hooks saved it

    def match(self, data: Mapping[str, Any]) -> bool:
        if self.project_path is not None and data.get("project_path") != self.project_path:
            return False
        if self.git_branch is not None and data.get("git_branch") != self.git_branch:
            return False
        if self.agent is not None and data.get("agent") != self.agent:
            return False
        return self.event is None or data.get("event") == self.event

    def any(self) -> bool:
        return any(v is not None for v in self)


class Diff(NamedTuple):
    session_id: str
    from_version: int
    to_version: int
    from_snapshot_id: str
    to_snapshot_id: str
    from_created_at: str
    to_created_at: str
    added: dict[str, list[str]]
    removed: dict[str, list[str]]
    changed: dict[str, dict[str, Any]]

    def view(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "from": {
                "version": self.from_version,
                "snapshot_id": self.from_snapshot_id,
                "created_at": self.from_created_at,
            },
            "to": {
                "version": self.to_version,
                "snapshot_id": self.to_snapshot_id,
                "created_at": self.to_created_at,
            },
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
        }

    @property
    def empty(self) -> bool:
        return not any(self.added.values()) and not any(self.removed.values()) and not self.changed


class SearchHit(NamedTuple):
    """One search result (`Store.search`): where the match is, and a snippet of it."""

    session_id: str
    version: int
    snapshot_id: str
    field: str  # open_tasks, key_decisions, files_modified or commands_run
    snippet: str  # the matching text, matches in [brackets]
    created_at: str

    def view(self) -> dict[str, Any]:
        return self._asdict()
