"""The seam a storage engine plugs into: what the surfaces — the HTTP app, MCP over HTTP, the
CLI, the hooks — need of the memory they serve. `Store` (the memory folder: logs in git) is the
first engine; a second one (a database shared by several servers) implements the same protocol
and every surface works on it unchanged. The contract suites run over an engine factory
(`tests/conftest.py`, `ENGINES`), so each engine is held to the same answers.

Every method takes the user first; the rules (`rules`) and the answers' bytes
(`Snapshot.json()`) are the engine's to keep identical to the file engine's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import builtins
    import threading
    from collections.abc import Mapping

    from typing_extensions import Unpack

    from .changes import Changes
    from .forget import Forgotten
    from .keys import KeyInfo
    from .memory import Memory
    from .model import Diff, FilterArgs, Page, ProjectArgs, SearchArgs, SessionsArgs, Snapshot
    from .project import ProjectView


class Keys(Protocol):
    """API keys: only their hashes are kept; `authenticate` answers the key's user."""

    def create(self, user: str) -> tuple[KeyInfo, str]: ...

    def list(self) -> builtins.list[KeyInfo]: ...

    def revoke(self, key_or_id: str) -> builtins.list[KeyInfo]: ...

    def authenticate(self, key: str | None) -> str | None: ...


class Follower(Protocol):
    """Keeps an engine's reads fresh as other processes write (a file watcher; a database's
    notifications): started with the server, stopped with it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Engine(Protocol):
    """What a storage engine answers (met by `Store`)."""

    blocking: bool  # reads wait on a network (the HTTP app calls them on a thread)
    changes: Changes  # told when a user's memory changes (the web page's live updates)

    async def answer_async(self, user: str, session_id: str) -> bytes: ...

    def keys(self) -> Keys: ...

    def follower(self) -> Follower: ...

    def secret(self, name: str) -> bytes: ...

    def for_user(self, user: str) -> Memory: ...

    def save(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Snapshot: ...

    async def save_async(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Snapshot: ...

    def delete(self, user: str, session_id: str) -> int: ...

    def forget(self, user: str, session_id: str) -> Forgotten: ...

    def latest(self, user: str, **filters: Unpack[FilterArgs]) -> Snapshot: ...

    def get(
        self,
        user: str,
        session_id: str,
        *,
        version: int | str | None = None,
        snapshot_id: str | None = None,
    ) -> Snapshot: ...

    def history(
        self, user: str, session_id: str, *, limit: int | str = 50, cursor: str | None = None
    ) -> Page: ...

    def versions(self, user: str, session_id: str, numbers: list[int]) -> list[Snapshot]: ...

    def diff(
        self,
        user: str,
        session_id: str,
        from_: int | str | None = None,
        to: int | str | None = None,
    ) -> Diff: ...

    def sessions(self, user: str, **args: Unpack[SessionsArgs]) -> Page: ...

    def search(
        self,
        user: str,
        q: str,
        *,
        cancel: threading.Event | None = None,
        **args: Unpack[SearchArgs],
    ) -> Page: ...

    def project(
        self, user: str, project_path: str | None = None, **args: Unpack[ProjectArgs]
    ) -> ProjectView: ...

    def saves_per_day(self, user: str, since_ms: int) -> dict[int, int]: ...

    def close(self) -> None: ...
