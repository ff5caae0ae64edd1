"""The HTTP surface (docs/http.md): a thin FastAPI adapter over an `Engine` (`Store`, the memory
folder, is the first).

`create_app(store)` builds an app; there is no module-level app. `sessionmem
serve` reaches it through `app_from_env`, which uvicorn calls once per worker.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from .. import __version__
from ..codec import dumps_view
from ..engine import Engine, Keys
from ..errors import (
    FieldError,
    InvalidInput,
    SessionmemError,
    Unauthorized,
)
from ..model import FilterArgs
from ..retention import RetentionThread
from ..retention import read as read_retention
from ..rules import MAX_LIMIT, PREFIX, SNAPSHOT_EVENTS, check_limit
from ..store import Store
from .core import (
    UNAUTHORIZED,
    HotPaths,
    error_body,
    extra_headers,
    post_snapshot,
    read_body,
    user_of,
)
from .mcp import PATH, McpEndpoint
from .schemas import (
    Deleted,
    DiffOut,
    ErrorOut,
    Forgotten,
    Health,
    HistoryPage,
    SearchPage,
    SessionsPage,
    SnapshotIn,
    SnapshotOut,
)
from .threads import off_loop, slow_read

DEFAULT_MAX_BODY = 1024 * 1024
T = TypeVar("T")
Handler = TypeVar("Handler", bound=Callable[..., Any])
_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="Your sessionmem API key.")
_bearer = HTTPBearer(auto_error=False, description="The same API key, as a bearer token.")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or unknown API key."},
    404: {"model": ErrorOut, "description": "No such session for this user."},
    422: {"model": ErrorOut, "description": "A field broke a rule; `detail` names it."},
}

# Checked by the library (one rule book: the same message on both doors), not by pydantic.
SessionId = Annotated[
    str, Path(description="1-128 characters matching [A-Za-z0-9][A-Za-z0-9._:@-]*.")
]
EventFilter = Annotated[
    str | None,
    Query(description=f"Only snapshots saved at this event: {', '.join(SNAPSHOT_EVENTS)}."),
]
Limit = Annotated[str | None, Query(description=f"Items per page, 1-{MAX_LIMIT}.")]
AgentFilter = Annotated[
    str | None, Query(description="Only snapshots an agent's hooks saved (metadata.agent).")
]
SnapshotIdQuery = Annotated[str | None, Query(description="Replay this snapshot (its id).")]
Cursor = Annotated[str | None, Query(description="next_cursor of the page before.")]


async def _filter_args(
    project_path: str | None = None,
    git_branch: str | None = None,
    event: EventFilter = None,
    agent: AgentFilter = None,
) -> FilterArgs:
    """The filters of latest, sessions and search, declared once (model.FilterArgs)."""
    return {"project_path": project_path, "git_branch": git_branch, "event": event, "agent": agent}


Filters = Annotated[FilterArgs, Depends(_filter_args)]


async def _user_of(
    request: Request,
    key: str | None = Security(_api_key),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> str:
    token = bearer.credentials if bearer is not None else None
    user = user_of(request.app.state.keyring, key, f"Bearer {token}" if token else None)
    if user is None:
        raise Unauthorized(UNAUTHORIZED)
    return user


User = Annotated[str, Depends(_user_of)]


async def _no_unknown_query(request: Request) -> None:
    """Refuse query parameters a route does not take: a misspelt filter (`?projectpath=`) would
    otherwise be ignored silently and answer for every project."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {p.alias for p in _all_query_params(dependant)}
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({n for n in names if names.count(n) > 1 and n in known})
    if repeated:
        raise InvalidInput(
            [FieldError(n, "is given more than once; give it once.") for n in repeated]
        )
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise InvalidInput(
            [
                FieldError(
                    name,
                    f"is not a parameter of this endpoint (it takes: {', '.join(sorted(known))}).",
                )
                for name in unknown
            ]
        )


def _all_query_params(dependant: Any) -> list[Any]:
    params = list(dependant.query_params)
    for sub in dependant.dependencies:
        params += _all_query_params(sub)
    return params


def route(
    method: Callable[..., Any], path: str, model: Any, tag: str = "sessions", **kw: Any
) -> Callable[[Handler], Handler]:
    """A route under the URL prefix answering `model`, with the error shapes every route shares."""
    responses = _ERRORS if model is None else {200: {"model": model}, **_ERRORS}
    decorate: Callable[[Handler], Handler] = method(
        PREFIX + path, responses=responses, tags=[tag], **kw
    )
    return decorate


def _json(value: Any, status: int = 200) -> Response:
    return Response(dumps_view(value), status_code=status, media_type="application/json")


def _detail_error(status: int, detail: Any) -> Response:
    return _json({"detail": detail}, status)


class _App(FastAPI):
    """FastAPI with `HotPaths` outermost: the hot requests skip even Starlette's middleware."""

    hot: HotPaths | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.hot is not None:
            await self.hot(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    store: Engine,
    *,
    keys: Keys | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    follow: bool = False,
    retention: bool = False,
) -> FastAPI:
    """The HTTP app over `store`. With `follow`, a watcher folds other processes' appends and
    git's file replacements as they happen (reads are up to date either way); with
    `retention`, the folder's `[retention]` rules are applied once a day (`retention`)."""
    keyring = keys or store.keys()
    health: dict[str, Any] = {"status": "ok", "version": __version__}
    if os.environ.get(INSTANCE_ENV):  # a random token: `serve --background` checks its child
        health["instance"] = os.environ[INSTANCE_ENV]

    mcp = McpEndpoint(store, keyring)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # lazy: .guard costs 41 ms at start-up
        from .guard import quiet_repeats

        quiet_repeats()  # a flood of identical failures is logged once, then counted
        watcher = None
        if follow:
            watcher = store.follower()
            watcher.start()
        pruner = None
        rules = read_retention(store.root) if retention and isinstance(store, Store) else None
        if rules is not None and isinstance(store, Store):
            pruner = RetentionThread(store, rules)
            pruner.start()
        try:
            async with mcp.running():
                yield
        finally:
            if pruner is not None:
                pruner.stop()
            if watcher is not None:
                watcher.stop()
            store.close()  # writes the projection cache: the next start folds only the tail

    app = _App(
        title="sessionmem",
        version=__version__,
        description="Git-native session memory for AI coding agents.",
        lifespan=lifespan,
        dependencies=[Depends(_no_unknown_query)],
    )
    app.state.store = store
    app.state.keyring = keyring
    app.hot = HotPaths(functools.partial(FastAPI.__call__, app), store, keyring, max_body)
    # MCP over streamable HTTP (http/mcp.py), outside the OpenAPI schema.
    app.router.routes.append(Route(PATH, endpoint=mcp, methods=["GET", "POST", "DELETE"]))
    # The web page (docs/web.md), outside the OpenAPI schema.
    # lazy: ..web costs ~25 ms at start-up (Jinja2)
    from ..web.pages import create_ui

    ui = create_ui(store, keyring)
    app.state.ui_links = ui.state.links  # `sessionmem ui` makes its sign-in link here
    app.mount("/ui", ui)

    @app.exception_handler(SessionmemError)
    async def library_error(request: Request, exc: SessionmemError) -> Response:
        where = "query" if request.method in ("GET", "DELETE") else "body"
        status, raw = error_body(exc, where)
        return Response(
            raw, status_code=status, media_type="application/json", headers=extra_headers(status)
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        items = []
        for err in exc.errors():
            loc = list(err.get("loc", ()))
            name = ".".join(str(p) for p in loc[1:]) or str(loc[0] if loc else "request")
            items.append({"loc": loc, "field": name, "msg": f"{name}: {err.get('msg')}."})
        return _detail_error(422, items)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = _detail_error(exc.status_code, exc.detail)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route's methods; a path can have several routes
            # (GET and DELETE /session/{id}). Name every method of the path template that matched.
            templates = [
                r.path
                for r in request.app.routes
                if r.matches({**request.scope, "method": "GET"})[0] != Match.NONE
                or r.matches({**request.scope, "method": "DELETE"})[0] != Match.NONE
            ]
            if templates:
                allowed: set[str] = set()
                for r in request.app.routes:
                    if getattr(r, "path", None) == templates[0]:
                        allowed |= getattr(r, "methods", None) or set()
                response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> Response:
        return _json(health)

    body_doc = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SnapshotIn.model_json_schema()}},
        }
    }

    @app.post(
        PREFIX + "/session",
        status_code=201,
        openapi_extra=body_doc,
        responses={
            201: {"model": SnapshotOut, "description": "The stored snapshot."},
            409: {"model": ErrorOut, "description": "Idempotency key reused with another body."},
            413: {"model": ErrorOut, "description": "Body over the limit."},
            **_ERRORS,
        },
        tags=["sessions"],
    )
    async def post_session(
        request: Request,
        user: User,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                description="1-255 characters: a retry with the same key stores nothing new.",
            ),
        ] = None,
    ) -> Response:
        # `HotPaths` answers this route before FastAPI sees it; this handler (the same code)
        # serves an app mounted without that middleware, and documents the route.
        raw = await _read_body(request, max_body)
        if isinstance(raw, Response):
            return raw
        status, answer = await post_snapshot(store, user, idempotency_key, raw)
        return Response(
            answer, status_code=status, media_type="application/json", headers=extra_headers(status)
        )

    @route(app.get, "/session/latest", SnapshotOut)
    async def get_latest(user: User, filters: Filters) -> Response:
        raw = (await off_loop(store, store.latest, user, **filters)).json()
        return Response(raw, media_type="application/json")

    @route(app.get, "/session/{session_id}", SnapshotOut)
    async def get_session(
        user: User,
        session_id: SessionId,
        version: Annotated[str | None, Query(description="Replay this version (from 1).")] = None,
        snapshot_id: SnapshotIdQuery = None,
    ) -> Response:
        raw = (
            await off_loop(
                store, store.get, user, session_id, version=version, snapshot_id=snapshot_id
            )  # fmt: skip
        ).json()
        return Response(raw, media_type="application/json")

    @route(app.get, "/session/{session_id}/history", HistoryPage)
    async def get_history(
        user: User,
        session_id: SessionId,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> Response:
        page = await run_in_threadpool(
            store.history, user, session_id, limit=_limit(limit, 50), cursor=cursor
        )
        return _json(page.view())

    @route(app.get, "/session/{session_id}/diff", DiffOut)
    async def get_diff(
        user: User,
        session_id: SessionId,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None,
    ) -> Response:
        d = await run_in_threadpool(store.diff, user, session_id, from_, to)
        return _json(d.view())

    @route(app.delete, "/session/{session_id}", Deleted)
    async def delete_session(user: User, session_id: SessionId) -> Response:
        hidden = await run_in_threadpool(store.delete, user, session_id)
        return _json({"session_id": session_id, "deleted": True, "versions": hidden})

    @route(
        app.post,
        "/session/{session_id}/forget",
        Forgotten,
        summary="Erase a session: its lines leave the log files, the index and the caches",
    )
    async def forget_session(user: User, session_id: SessionId) -> Response:
        done = await run_in_threadpool(store.forget, user, session_id)
        return _json(done.answer(session_id))

    @route(app.get, "/sessions", SessionsPage)
    async def list_sessions(
        user: User, filters: Filters, limit: Limit = None, cursor: Cursor = None
    ) -> Response:
        page = await run_in_threadpool(
            functools.partial(
                store.sessions, user, **filters, limit=_limit(limit, 50), cursor=cursor
            )
        )
        return _json(page.view())

    @route(
        app.get,
        "/project",
        None,
        summary="The project view: the snapshot a briefing comes from, and what earlier "
        "sessions left open",
    )
    async def get_project(
        user: User,
        project_path: str | None = None,
        git_branch: str | None = None,
        prefer: Annotated[
            list[str] | None, Query(description="Sessions whose snapshot comes first.")
        ] = None,
        also: Annotated[
            list[str] | None, Query(description="Other paths the project was saved under.")
        ] = None,
    ) -> Response:
        view = await run_in_threadpool(
            store.project, user, project_path, git_branch=git_branch, prefer=prefer or (),
            also=also or (),
        )  # fmt: skip
        return _json(view.view())

    @route(
        app.get,
        "/search",
        SearchPage,
        "search",
        summary="Search your snapshots' tasks, decisions, files and commands",
    )
    async def search(
        request: Request,
        user: User,
        q: Annotated[
            str,
            Query(description='Words, "phrases", prefix*, task:/decision:/file:/command: scopes.'),
        ],
        filters: Filters,
        session_id: str | None = None,
        since: Annotated[
            str | None, Query(description="From this UTC time (2026-12-01...).")
        ] = None,
        until: Annotated[str | None, Query(description="Up to this UTC time, inclusive.")] = None,
        all_versions: Annotated[
            bool, Query(description="Every version, not only the newest.")
        ] = False,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> Response:
        cancel = threading.Event()
        call = functools.partial(
            store.search, user, q, **filters, session_id=session_id, since=since, until=until,
            all_versions=all_versions, limit=_limit(limit, 20), cursor=cursor, cancel=cancel,
        )  # fmt: skip
        page = await slow_read(request, call, cancel)
        return _json(page.view())

    return app


def _limit(value: str | None, default: int) -> int:
    """A page size from the query string, by the rule book's check (the same words as Store)."""
    return default if value is None else check_limit(value)


async def _read_body(request: Request, limit: int) -> bytes | Response:
    body = await read_body(request.headers.get("content-length"), request.stream(), limit)
    if isinstance(body, tuple):
        return Response(body[1], status_code=body[0], media_type="application/json")
    return body


INSTANCE_ENV = "SESSIONMEM_INSTANCE"


def app_from_env() -> FastAPI:
    """The factory `sessionmem serve` hands to uvicorn (one call per worker process)."""
    url = os.environ.get("SESSIONMEM_DATABASE")
    if url:
        # lazy: the postgres engine costs ~60 ms at start-up (psycopg), and is optional
        from ..pg.engine import PgStore

        return create_app(PgStore(url), follow=True, max_body=int(os.environ.get(
                          "SESSIONMEM_MAX_BODY", DEFAULT_MAX_BODY)))  # fmt: skip
    store = Store(os.environ["SESSIONMEM_ROOT"])
    follow = os.environ.get("SESSIONMEM_FOLLOW", "1") != "0"
    max_body = int(os.environ.get("SESSIONMEM_MAX_BODY", DEFAULT_MAX_BODY))
    return create_app(store, follow=follow, max_body=max_body, retention=True)
