"""One user's memory, whichever way it is reached: `Store.for_user(user)` on a memory folder, or
`Client` / `AsyncClient` on a server. The CLI and the agents' hooks hold a `Memory` and do not care
which — one vocabulary, the same names and arguments everywhere (docs/http.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .layout import check_user
from .model import Diff, Page, Snapshot
from .pages import diff_of
from .project import project_view

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .engine import Engine
    from .model import FilterArgs, ProjectArgs, SearchArgs, SessionsArgs
    from .project import ProjectView


class Memory(Protocol):
    """What a user-bound memory answers (met by `UserMemory` and `Client`); the arguments are
    the library's vocabulary, typed once (`model.FilterArgs`, `SessionsArgs`, `SearchArgs`)."""

    def save(
        self,
        session_id: str | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Snapshot: ...

    def latest(self, **filters: Unpack[FilterArgs]) -> Snapshot: ...

    def get(
        self, session_id: str, *, version: int | str | None = None, snapshot_id: str | None = None
    ) -> Snapshot: ...

    def history(
        self, session_id: str, *, limit: int | str = 50, cursor: str | None = None
    ) -> Page: ...

    def diff(
        self, session_id: str, from_: int | str | None = None, to: int | str | None = None
    ) -> Diff: ...

    def sessions(self, **args: Unpack[SessionsArgs]) -> Page: ...

    def search(self, q: str, **args: Unpack[SearchArgs]) -> Page: ...

    def project(
        self, project_path: str | None = None, **args: Unpack[ProjectArgs]
    ) -> ProjectView: ...

    def delete(self, session_id: str) -> int: ...

    def forget(self, session_id: str) -> dict[str, Any]: ...


def body_of(session_id: str | Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """`save("s1", open_tasks=[...])` and `save({...body...})` alike, as a request body."""
    if isinstance(session_id, str):
        return {"session_id": session_id, **fields}
    return {**session_id, **fields}


class UserMemory:
    """An engine (`Store`, `PgStore`) bound to one user, with the `Client`'s vocabulary (see
    `Memory`)."""

    def __init__(self, store: Engine, user: str):
        self.store = store
        self.user = user

    def save(
        self,
        session_id: str | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Snapshot:
        return self.store.save(
            self.user, body_of(session_id, fields), idempotency_key=idempotency_key
        )

    def latest(self, **filters: Unpack[FilterArgs]) -> Snapshot:
        return self.store.latest(self.user, **filters)

    def get(
        self, session_id: str, *, version: int | str | None = None, snapshot_id: str | None = None
    ) -> Snapshot:
        return self.store.get(self.user, session_id, version=version, snapshot_id=snapshot_id)

    def history(self, session_id: str, *, limit: int | str = 50, cursor: str | None = None) -> Page:
        return self.store.history(self.user, session_id, limit=limit, cursor=cursor)

    def diff(
        self, session_id: str, from_: int | str | None = None, to: int | str | None = None
    ) -> Diff:
        return self.store.diff(self.user, session_id, from_, to)

    def sessions(self, **args: Unpack[SessionsArgs]) -> Page:
        return self.store.sessions(self.user, **args)

    def search(self, q: str, **args: Unpack[SearchArgs]) -> Page:
        return self.store.search(self.user, q, **args)

    def project(self, project_path: str | None = None, **args: Unpack[ProjectArgs]) -> ProjectView:
        """The project view (docs/decisions.md, "The briefing")."""

        return project_view(self, project_path, **args)

    def delete(self, session_id: str) -> int:
        return self.store.delete(self.user, session_id)

    def forget(self, session_id: str) -> dict[str, Any]:
        return self.store.forget(self.user, session_id).answer(session_id)


def merged(
    base: Mapping[str, Any],
    add: Mapping[str, list[str] | None],
    done: list[str] | None = None,
) -> dict[str, Any]:
    """A save that starts from a session's latest snapshot (`sessionmem save --merge`, the MCP
    `save_checkpoint`): the items in `add` appended to their lists where new, the tasks in `done`
    no longer open, and where each item came from kept (`metadata.sources`: an item added here
    is "save"; docs/decisions.md, "What the hooks capture")."""
    body = dict(base)
    for name, items in add.items():
        if items:
            existing = list(body.get(name) or [])
            body[name] = existing + [x for x in dict.fromkeys(items) if x not in existing]
    if done:
        body["open_tasks"] = [t for t in body.get("open_tasks") or [] if t not in done]
        # Closed here, so the project view drops them from later briefings, whichever earlier
        # session left them open (docs/decisions.md, "The briefing").
        closed = [t for t in body.get("closed_tasks") or [] if isinstance(t, str)]
        body["closed_tasks"] = closed + [t for t in dict.fromkeys(done) if t not in closed]
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("sources"), dict):
        sources = dict(meta["sources"])
        for name in ("open_tasks", "key_decisions"):
            old_items, old = base.get(name) or [], sources.get(name)
            if isinstance(old, list) and len(old) == len(old_items):
                known = dict(zip(old_items, old, strict=True))
                sources[name] = [known.get(x, "save") for x in body.get(name) or []]
        meta = {**meta, "sources": sources}
        if isinstance(meta.get("in_progress"), list):
            still = body.get("open_tasks") or []
            meta["in_progress"] = [t for t in meta["in_progress"] if t in still]
        body["metadata"] = meta
    return body


class EngineReads:
    """What every engine answers the same way from its own `get`: `diff`, the user-bound
    memory (`for_user`) and the project view — written once for `Store` and `PgStore`."""

    blocking = False  # reads wait on a network: the HTTP app calls them off its event loop

    async def answer_async(self: Engine, user: str, session_id: str) -> bytes:
        """GET /session/latest (`session_id` "latest") or a session's newest snapshot, as the
        JSON an asyncio server sends (the file engine answers from memory, at once)."""
        if session_id == "latest":
            return self.latest(user).json()
        return self.get(user, session_id).json()

    def for_user(self: Engine, user: str) -> UserMemory:
        """This engine bound to one user, with the `Client`'s vocabulary (`Memory`)."""
        return UserMemory(self, check_user(user))

    def versions(self: Engine, user: str, session_id: str, numbers: list[int]) -> list[Snapshot]:
        """These versions of a session, in the order asked (the web page's timeline); an engine
        that can reads them at once (`PgStore`)."""
        return [self.get(user, session_id, version=n) for n in numbers]

    def diff(
        self: Engine,
        user: str,
        session_id: str,
        from_: int | str | None = None,
        to: int | str | None = None,
    ) -> Diff:
        """What changed between two snapshots (versions or snapshot ids) of a session; by
        default from the previous snapshot to the latest."""
        return diff_of(self.get, user, session_id, from_, to)

    def project(
        self: Engine, user: str, project_path: str | None = None, **args: Unpack[ProjectArgs]
    ) -> ProjectView:
        """The project view of `project_path` for a session on `git_branch`: the snapshot a
        briefing comes from, and the open tasks and decisions earlier sessions left (see
        `project.project_view`; docs/decisions.md, "The briefing")."""
        return self.for_user(check_user(user)).project(project_path, **args)
