"""The web page's handlers (docs/web.md): a Starlette app the HTTP app mounts at `/ui`.

Every page but sign-in needs the signed cookie (else a redirect to sign-in); every POST needs the
CSRF token; every answer carries a strict Content-Security-Policy (scripts and styles from this
server only, nothing inline, no framing) and `Cache-Control: no-store`. The engine is asked on a
thread, so a slow read never holds the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..changes import open_stream
from ..codec import SNAPSHOT_EVENTS
from ..engine import Engine, Keys
from ..errors import InvalidInput, NotFound, SessionmemError, StorageError
from ..http.threads import off_loop, slow_read
from ..keys import hash_key
from ..render import clock
from ..rules import check_session_id
from . import views
from .auth import COOKIE, CSRF_COOKIE, SESSION_SECONDS, Links, Signer, Visitor, new_csrf_cookie

HERE = Path(__file__).parent
FILTERS = ("project_path", "git_branch", "agent", "event")
MAX_FORM = 16 * 1024  # a sign-in or confirmation form is a few hundred bytes
PING_SECONDS = 15.0  # a live stream's keep-alive comment
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


class Pages:
    def __init__(self, store: Engine, keyring: Keys, links: Links):
        self.store = store
        self.keyring = keyring
        self.links = links
        self._signer: Signer | None = None
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every stored string is text, whatever it holds
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = clock  # (the briefing's way of writing a time)
        self.env.filters["item"] = views.item_text
        self.env.globals["how_many"] = views.how_many
        self.env.globals.update(FIELD_NAMES=views.FIELD_NAMES, FIELD_ORDER=views.FIELD_ORDER,
                                EVENTS=SNAPSHOT_EVENTS, urlencode=urlencode,
                                version=__version__)  # fmt: skip

    @property
    def signer(self) -> Signer:
        """Signs with the memory's secret, made on first use (`Engine.secret`)."""
        if self._signer is None:
            self._signer = Signer(self.store.secret("ui"))
        return self._signer

    # --- answering ---------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page; the browser's CSRF cookie is made here when it has none."""
        csrf = request.cookies.get(CSRF_COOKIE)
        fresh = csrf is None
        if csrf is None:
            csrf = new_csrf_cookie()
        try:
            token = self.signer.csrf_token(csrf)
        except StorageError:  # a damaged secret: the page says so, and no form can be sent
            token = ""
        html = self.env.get_template(template).render(
            csrf=token,
            partial=request.headers.get("hx-request") == "true",
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if fresh:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/ui",
                                secure=_tls(request))  # fmt: skip
        return response

    def message(self, request: Request, status: int, title: str, text: str,
                me: Visitor | None = None) -> HTMLResponse:  # fmt: skip
        return self.render(request, "message.html", status, title=title, text=text, me=me)

    async def visitor(self, request: Request) -> Visitor | None:
        """The signed-in visitor, or None. A session signed in with a key ends when the key is
        revoked."""
        me = self.signer.visitor(request.cookies.get(COOKIE))
        if me is None or not me.key_id:
            return me
        keys = await off_loop(self.store, self.keyring.list)  # (a file engine's: in memory)
        if any(k.id == me.key_id and k.user == me.user for k in keys):
            return me
        return None

    async def form(self, request: Request) -> dict[str, str] | None:
        """The posted form's fields, or None when its CSRF token is missing or wrong."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                return None
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        token = fields.get("csrf") or request.headers.get("x-csrf-token")
        if not self.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), token):
            return None
        return fields

    def forbidden(self, request: Request, me: Visitor | None = None) -> HTMLResponse:
        return self.message(
            request, 403, "This form has expired",
            "The form did not carry this page's security token (it may be from an older page, "
            "or from another site). Go back, reload the page, and try again.", me,
        )  # fmt: skip

    # --- signing in and out ------------------------------------------------------------------

    async def signin(self, request: Request) -> Response:
        if request.method == "GET":
            token = request.query_params.get("token")
            if token is not None:
                user = self.links.redeem(token)
                if user is None:
                    return self.render(request, "signin.html", 401, problem=(
                        "That sign-in link was used already or has expired. Run `sessionmem ui` "
                        "again for a new one, or sign in with an API key."))  # fmt: skip
                return self._signed_in(request, user, "", "linked.html")
            return self.render(request, "signin.html", problem=None)
        fields = await self.form(request)
        if fields is None:
            return self.forbidden(request)
        key = fields.get("api_key", "").strip()
        user = await run_in_threadpool(self.keyring.authenticate, key) if key else None
        if user is None:
            return self.render(
                request,
                "signin.html",
                401,
                problem=(
                    "That API key is not known here. `sessionmem keys create USER` makes one."
                ),
            )
        return self._signed_in(request, user, hash_key(key)[:12], None)

    def _signed_in(self, request: Request, user: str, key_id: str,
                   page: str | None) -> Response:  # fmt: skip
        response: Response
        if page is None:
            response = RedirectResponse("/ui/", status_code=303)
        else:  # after a link from elsewhere: a same-site step, so the Strict cookie is sent
            response = self.render(request, page, user=user)
        response.set_cookie(COOKIE, self.signer.session(user, key_id), max_age=SESSION_SECONDS,
                            httponly=True, samesite="strict", path="/ui",
                            secure=_tls(request))  # fmt: skip
        return response

    async def signout(self, request: Request) -> Response:
        if await self.form(request) is None:
            return self.forbidden(request)
        response = RedirectResponse("/ui/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict",
                               secure=_tls(request))  # fmt: skip
        return response

    # --- pages -------------------------------------------------------------------------------

    async def sessions(self, request: Request, me: Visitor) -> Response:
        filters = {k: request.query_params.get(k) or None for k in FILTERS}
        cursor = request.query_params.get("cursor") or None
        page = await run_in_threadpool(
            lambda: self.store.sessions(me.user, **filters, limit=views.PAGE, cursor=cursor)
        )
        shown = {k: v for k, v in filters.items() if v}
        if request.url.path.endswith("/rows"):
            return self.render(request, "_rows.html", items=page.items, me=me)
        since = int(time.time() * 1000) - views.CHART_DAYS * views.DAY_MS
        per_day = await run_in_threadpool(self.store.saves_per_day, me.user, since)
        return self.render(request, "sessions.html", me=me, items=page.items, filters=filters,
                           shown=shown, cursor=cursor, next_cursor=page.next_cursor,
                           chart=views.chart(per_day))  # fmt: skip

    async def search(self, request: Request, me: Visitor) -> Response:
        q = (request.query_params.get("q") or "").strip()
        hits: list[Any] = []
        if q:  # on the slow-read threads, stopped when the browser goes away (a new keystroke)
            cancel = threading.Event()
            page = await slow_read(
                request, lambda: self.store.search(me.user, q, limit=20, cancel=cancel), cancel
            )
            hits = [(h, views.snippet_parts(h.snippet)) for h in page.items]
        return self.render(request, "search.html", me=me, q=q, hits=hits)

    async def timeline(self, request: Request, me: Visitor) -> Response:
        session_id = request.path_params["session_id"]
        cursor = request.query_params.get("cursor") or None
        items, nxt, total = await run_in_threadpool(views.timeline, self.store, me.user,
                                                    session_id, cursor)  # fmt: skip
        if not items:
            raise NotFound(f"No session {session_id!r}.")
        template = "_versions.html" if request.url.path.endswith("/versions") else "timeline.html"
        return self.render(request, template, me=me, session_id=session_id, items=items,
                           cursor=cursor, next_cursor=nxt, total=total)  # fmt: skip

    async def version(self, request: Request, me: Visitor) -> Response:
        session_id = request.path_params["session_id"]
        n = request.path_params["version"]
        snap = await run_in_threadpool(lambda: self.store.get(me.user, session_id, version=n))
        total = (await run_in_threadpool(self.store.get, me.user, session_id)).version
        return self.render(request, "version.html", me=me, snap=snap, total=total,
                           row=views.version_of(snap),
                           extra=views.extra_fields(snap))  # fmt: skip

    async def diff(self, request: Request, me: Visitor) -> Response:
        session_id = request.path_params["session_id"]
        q = request.query_params
        d = await run_in_threadpool(self.store.diff, me.user, session_id,
                                    q.get("from") or None, q.get("to") or None)  # fmt: skip
        return self.render(request, "diff.html", me=me, view=views.diff_view(d))

    async def confirm(self, request: Request, me: Visitor) -> Response:
        """Delete (a tombstone) or forget (erasure): a confirmation page, then the POST."""
        session_id = request.path_params["session_id"]
        action = request.url.path.rsplit("/", 1)[1]
        if request.method == "GET":
            snap = await run_in_threadpool(self.store.get, me.user, session_id)
            return self.render(request, "confirm.html", me=me, action=action, snap=snap)
        if await self.form(request) is None:
            return self.forbidden(request, me)
        if action == "delete":
            n = await run_in_threadpool(self.store.delete, me.user, session_id)
            done = f"Deleted session {session_id} ({n} version{'s' if n != 1 else ''} hidden)."
        else:
            gone = await run_in_threadpool(self.store.forget, me.user, session_id)
            n = gone.answer(session_id)["events"]
            done = f"Forgot session {session_id}: {n} event{'s' if n != 1 else ''} erased."
        return self.message(request, 200, "Done", done, me)

    async def events(self, request: Request, me: Visitor) -> Response:
        """Server-sent events: `changed` whenever this user's memory changes, and once when the
        stream opens (htmx's SSE extension reloads the list or timeline on it): a save made
        before the stream listened is never missed."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        ending = _Ending(wake)

        def heard(user: str | None) -> None:
            if user is None or user == me.user:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(wake.set)

        async def stream() -> AsyncIterator[bytes]:
            unsubscribe = self.store.changes.subscribe(heard)
            unregister = open_stream(ending)
            try:
                # At once, a first `changed`: whatever was saved between the page's rendering
                # and this stream's start (or while it was reconnecting) is fetched now.
                yield b"retry: 1000\n\nevent: changed\ndata: changed\n\n"
                while not ending.now:
                    try:
                        await asyncio.wait_for(wake.wait(), PING_SECONDS)
                    except TimeoutError:
                        yield b": ping\n\n"
                        continue
                    if ending.now:
                        break
                    wake.clear()
                    yield b"event: changed\ndata: changed\n\n"
                    await asyncio.sleep(0.1)  # a burst of saves is one reload
            finally:
                unsubscribe()
                unregister()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})  # fmt: skip


def create_ui(store: Engine, keyring: Keys, links: Links | None = None) -> Starlette:
    """The web page's app (mounted at `/ui` by `http.app.create_app`)."""
    pages = Pages(store, keyring, links or Links())

    def unsigned(handler: Handler) -> Handler:
        """Sign-in and sign-out: a key file or secret that cannot be read is a page saying so."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except StorageError as exc:
                return pages.message(request, 503, "Try again", str(exc))

        return endpoint

    def signed(handler: Callable[[Request, Visitor], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                me = await pages.visitor(request)
            except StorageError as exc:  # keys.json or the secret cannot be read
                return pages.message(request, 503, "Try again", str(exc))
            if me is None:
                if request.headers.get("hx-request") == "true" or request.url.path.endswith(
                    "/events"
                ):
                    return Response(status_code=401, headers={"HX-Redirect": "/ui/signin"})
                return RedirectResponse("/ui/signin", status_code=303)
            sid = request.path_params.get("session_id")
            try:
                if sid is not None:
                    check_session_id(sid)
                return await handler(request, me)
            except NotFound:
                return pages.message(request, 404, "Not found",
                                     f"There is no session {sid!r} here." if sid else
                                     "There is nothing here.", me)  # fmt: skip
            except StorageError as exc:
                return pages.message(request, 503, "Try again", str(exc), me)
            except (InvalidInput, SessionmemError) as exc:
                return pages.message(request, 400, "Not understood", str(exc), me)

        return endpoint

    routes = [
        Route("/", signed(pages.sessions)),
        Route("/rows", signed(pages.sessions)),
        Route("/search", signed(pages.search)),
        Route("/events", signed(pages.events)),
        Route("/signin", unsigned(pages.signin), methods=["GET", "POST"]),
        Route("/signout", unsigned(pages.signout), methods=["POST"]),
        Route("/s/{session_id}", signed(pages.timeline)),
        Route("/s/{session_id}/versions", signed(pages.timeline)),
        Route("/s/{session_id}/v/{version:int}", signed(pages.version)),
        Route("/s/{session_id}/diff", signed(pages.diff)),
        Route("/s/{session_id}/delete", signed(pages.confirm), methods=["GET", "POST"]),
        Route("/s/{session_id}/forget", signed(pages.confirm), methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecureHeaders)])
    app.state.links = pages.links
    return app


class _Ending:
    """A live stream's stop: `stop_streams` calls `set` when the server stops."""

    def __init__(self, wake: asyncio.Event):
        self.wake = wake
        self.now = False

    def set(self) -> None:
        self.now = True
        self.wake.set()


def _tls(request: Request) -> bool:
    return request.url.scheme == "https"


class SecureHeaders:
    """Every answer of the web page carries SECURITY_HEADERS (static files a day's caching:
    their URLs name the version)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/") or "/static/" in scope["path"]

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in present and not (static and k == "Cache-Control")
                ]
                if static:
                    extra.append((b"cache-control", b"public, max-age=86400"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
