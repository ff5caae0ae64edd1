"""Pydantic models of the HTTP edge (pydantic lives at the edges only), for the OpenAPI document.

Requests are checked by the library's own rules (`model.normalize_snapshot`), so every surface
refuses the same input with the same message; these models describe the shapes for `/docs`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..names import SESSION_CHARS

SESSION_PATTERN = f"^{SESSION_CHARS}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
EventName = Literal["pre_compact", "session_end", "checkpoint"]


class SnapshotIn(BaseModel):
    """A full snapshot of a session's state at this moment (it replaces, it does not merge).

    Unknown top-level fields are kept and returned in `session_data`."""

    model_config = ConfigDict(extra="allow")

    # POSTing "latest" is refused: GET /session/latest would shadow it.
    session_id: str = Field(
        pattern=SESSION_PATTERN, max_length=128, json_schema_extra={"not": {"const": "latest"}}
    )
    project_path: str | None = None
    files_modified: list[str] | None = None
    commands_run: list[str] | None = None
    key_decisions: list[str] | None = None
    open_tasks: list[str] | None = None
    event: EventName | None = "checkpoint"
    git_branch: str | None = None
    git_commit: str | None = None
    metadata: dict[str, Any] | None = None
    snapshot_id: str | None = Field(
        default=None,
        pattern=UUID_PATTERN,
        description="Optional client-chosen UUID: a retry with it stores nothing new.",
    )


class SessionData(BaseModel):
    model_config = ConfigDict(extra="allow")

    project_path: str | None = None
    files_modified: list[str]
    commands_run: list[str]
    key_decisions: list[str]
    open_tasks: list[str]
    event: EventName


class SnapshotOut(BaseModel):
    session_id: str
    version: int
    snapshot_id: str
    event: EventName
    created_at: str
    session_data: SessionData


class Counts(BaseModel):
    files_modified: int
    commands_run: int
    key_decisions: int
    open_tasks: int


class HistoryItem(BaseModel):
    version: int
    snapshot_id: str
    event: EventName
    created_at: str
    counts: Counts


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None


class SessionItem(BaseModel):
    session_id: str
    version: int
    snapshot_id: str
    event: EventName
    created_at: str
    project_path: str | None
    git_branch: str | None
    counts: Counts


class SessionsPage(BaseModel):
    items: list[SessionItem]
    next_cursor: str | None


class SearchHitOut(BaseModel):
    session_id: str
    version: int
    snapshot_id: str
    field: str
    snippet: str
    created_at: str


class SearchPage(BaseModel):
    items: list[SearchHitOut]
    next_cursor: str | None


class DiffEnd(BaseModel):
    version: int
    snapshot_id: str
    created_at: str


class DiffOut(BaseModel):
    session_id: str
    from_: DiffEnd = Field(alias="from")
    to: DiffEnd
    added: dict[str, list[str]]
    removed: dict[str, list[str]]
    changed: dict[str, dict[str, Any]]


class Deleted(BaseModel):
    session_id: str
    deleted: bool
    versions: int


class Forgotten(BaseModel):
    session_id: str
    forgotten: bool
    events: int  # lines taken out of the log files
    record: str | None  # the erase record's id
    committed: list[str]  # commits whose history still holds the lines (git filter-repo)


class ErrorOut(BaseModel):
    detail: Any


class Health(BaseModel):
    status: str
    version: str
    instance: str | None = None  # set by `serve --background`, so it knows its own child
