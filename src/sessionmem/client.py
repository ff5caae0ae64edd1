"""`sessionmem.Client` and `sessionmem.AsyncClient`: the HTTP API from Python, over httpx.

Results are the library's own immutable records (`Snapshot`, `Page`, `Diff`); an error answer
raises `ClientError` carrying the server's status and detail. Both clients share one description
of each call (`_Call`), so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

import httpx

from .errors import ClientError, FieldError, InvalidInput, client_error
from .memory import body_of
from .model import Diff, HistoryEntry, Page, SearchHit, SessionSummary, Snapshot
from .project import ProjectView
from .rules import PREFIX

T = TypeVar("T")
P = ParamSpec("P")

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .model import FilterArgs, ProjectArgs, SearchArgs, SessionsArgs


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    kwargs: dict[str, Any] = field(default_factory=dict)


def _diff(raw: dict[str, Any]) -> Diff:
    return Diff(
        session_id=raw["session_id"],
        from_version=raw["from"]["version"],
        to_version=raw["to"]["version"],
        from_snapshot_id=raw["from"]["snapshot_id"],
        to_snapshot_id=raw["to"]["snapshot_id"],
        from_created_at=raw["from"]["created_at"],
        to_created_at=raw["to"]["created_at"],
        added=raw["added"],
        removed=raw["removed"],
        changed=raw["changed"],
    )


class _Calls:
    """What each method sends and how its answer is read: written once, with the public
    signature; `Client` and `AsyncClient` are made of these (`_sync`, `_async`)."""

    @staticmethod
    def save(
        session_id: str | Mapping[str, Any], *, idempotency_key: str | None = None, **fields: Any
    ) -> _Call[Snapshot]:
        """Store a full snapshot: `save("s1", open_tasks=[...])` or `save({...body...})`."""
        body = body_of(session_id, fields)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return _Call(
            "POST", f"{PREFIX}/session", Snapshot.from_view, {"json": body, "headers": headers}
        )

    @staticmethod
    def latest(**filters: Unpack[FilterArgs]) -> _Call[Snapshot]:
        """The latest snapshot over all your sessions (filters: project_path, git_branch,
        event, agent)."""
        params = _params(**filters)
        return _Call("GET", f"{PREFIX}/session/latest", Snapshot.from_view, {"params": params})

    @staticmethod
    def get(
        session_id: str, *, version: int | str | None = None, snapshot_id: str | None = None
    ) -> _Call[Snapshot]:
        """A session's latest snapshot, or a past one by `version` or `snapshot_id`."""
        params = _params(version=version, snapshot_id=snapshot_id)
        return _Call(
            "GET", f"{PREFIX}/session/{session_id}", Snapshot.from_view, {"params": params}
        )

    @staticmethod
    def history(
        session_id: str, *, limit: int | str = 50, cursor: str | None = None
    ) -> _Call[Page]:
        """A session's snapshots, newest first; pass `next_cursor` back as `cursor`."""
        return _Call(
            "GET",
            f"{PREFIX}/session/{session_id}/history",
            lambda raw: Page([HistoryEntry(**i) for i in raw["items"]], raw["next_cursor"]),
            {"params": _params(limit=limit, cursor=cursor)},
        )

    @staticmethod
    def diff(
        session_id: str, from_: int | str | None = None, to: int | str | None = None
    ) -> _Call[Diff]:
        """What changed between two snapshots (default: previous -> latest)."""
        return _Call(
            "GET",
            f"{PREFIX}/session/{session_id}/diff",
            _diff,
            {"params": _params(**{"from": from_, "to": to})},
        )

    @staticmethod
    def sessions(**args: Unpack[SessionsArgs]) -> _Call[Page]:
        """Your sessions, newest first (filters as `latest`; `limit`, `cursor`)."""
        return _Call(
            "GET",
            f"{PREFIX}/sessions",
            lambda raw: Page([SessionSummary(**i) for i in raw["items"]], raw["next_cursor"]),
            {"params": _params(**args)},
        )

    @staticmethod
    def search(q: str, **args: Unpack[SearchArgs]) -> _Call[Page]:
        """`Store.search` on the server (filters as `sessions`, and session_id, since, until,
        all_versions)."""
        return _Call(
            "GET",
            f"{PREFIX}/search",
            lambda raw: Page([SearchHit(**i) for i in raw["items"]], raw["next_cursor"]),
            {"params": _params(q=q, **args)},
        )

    @staticmethod
    def project(project_path: str | None = None, **args: Unpack[ProjectArgs]) -> _Call[ProjectView]:
        """The project view on the server (`GET /project`; docs/decisions.md, "The
        briefing")."""
        params: dict[str, Any] = _params(
            project_path=project_path, git_branch=args.get("git_branch")
        )
        preferred = [p for p in args.get("prefer", ()) if p]
        also = list(args.get("also", ()))
        params.update({k: v for k, v in (("prefer", preferred), ("also", also)) if v})
        return _Call("GET", f"{PREFIX}/project", ProjectView.from_view, {"params": params})

    @staticmethod
    def delete(session_id: str) -> _Call[int]:
        """Hide a session from every read; returns how many versions it hid."""
        return _Call("DELETE", f"{PREFIX}/session/{session_id}", lambda r: int(r["versions"]))

    @staticmethod
    def forget(session_id: str) -> _Call[dict[str, Any]]:
        """Erase a session from the server's log files and everything derived (not only hide
        it): {"session_id", "forgotten", "events", "record", "committed"}."""
        return _Call("POST", f"{PREFIX}/session/{session_id}/forget", lambda raw: dict(raw))

    @staticmethod
    def health() -> _Call[dict[str, Any]]:
        return _Call("GET", "/healthz", lambda raw: dict(raw))


class _Doer(Protocol):
    def _do(self, call: _Call[T]) -> T: ...


class _AsyncDoer(Protocol):
    async def _do(self, call: _Call[T]) -> T: ...


def _sync(build: Callable[P, _Call[T]]) -> Callable[Concatenate[_Doer, P], T]:
    """A `Client` method: send what `build` describes, answer what it reads."""

    def method(self: _Doer, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._do(build(*args, **kwargs))

    method.__name__, method.__doc__ = build.__name__, build.__doc__
    return method


def _async(build: Callable[P, _Call[T]]) -> Callable[Concatenate[_AsyncDoer, P], Awaitable[T]]:
    """An `AsyncClient` method: the same, awaited."""

    async def method(self: _AsyncDoer, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._do(build(*args, **kwargs))

    method.__name__, method.__doc__ = build.__name__, build.__doc__
    return method


def _answer(response: httpx.Response, call: _Call[T]) -> T:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text
        raise client_error(response.status_code, detail, str(response.request.url))
    return call.parse(response.json())


def _unreachable(exc: httpx.HTTPError, base_url: str) -> ClientError:
    reason = str(exc) or type(exc).__name__
    return ClientError(
        0, f"Could not reach the sessionmem server at {base_url} ({reason}). Is it running?"
    )


def _check_url(base_url: str) -> str:
    if not base_url.startswith(("http://", "https://")):
        raise InvalidInput(
            FieldError(
                "base_url",
                f"{base_url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8765).",
            )
        )
    return base_url


class Client:
    """A client for a sessionmem server.

    >>> client = Client("http://127.0.0.1:8765", api_key="smk_...")  # doctest: +SKIP
    >>> client.save("session-abc123", open_tasks=["Write tests"])  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"x-api-key": api_key} if api_key else {}
        self.base_url = _check_url(str(http.base_url) if http is not None else base_url)
        if http is not None:
            http.headers.update(headers)
            self._http = http
        else:
            self._http = httpx.Client(
                base_url=base_url, headers=headers, timeout=timeout, transport=transport
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, call: _Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, **call.kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(exc, self.base_url) from exc
        return _answer(response, call)

    save = _sync(_Calls.save)
    latest = _sync(_Calls.latest)
    get = _sync(_Calls.get)
    history = _sync(_Calls.history)
    diff = _sync(_Calls.diff)
    sessions = _sync(_Calls.sessions)
    search = _sync(_Calls.search)
    project = _sync(_Calls.project)
    delete = _sync(_Calls.delete)
    forget = _sync(_Calls.forget)
    health = _sync(_Calls.health)


class AsyncClient:
    """`Client` for asyncio code: the same methods, awaited."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        headers = {"x-api-key": api_key} if api_key else {}
        self.base_url = _check_url(base_url)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: _Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, **call.kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(exc, self.base_url) from exc
        return _answer(response, call)

    save = _async(_Calls.save)
    latest = _async(_Calls.latest)
    get = _async(_Calls.get)
    history = _async(_Calls.history)
    diff = _async(_Calls.diff)
    sessions = _async(_Calls.sessions)
    search = _async(_Calls.search)
    project = _async(_Calls.project)
    delete = _async(_Calls.delete)
    forget = _async(_Calls.forget)
    health = _async(_Calls.health)
