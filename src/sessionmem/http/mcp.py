"""The MCP server over streamable HTTP at `/mcp` of `sessionmem serve` (docs/decisions.md, "MCP"):
the same tools as `sessionmem mcp`, for the user whose API key comes with each request
(`x-api-key` or `Authorization: Bearer`). The SDK loads on the first request to `/mcp`, so a
server that is never asked pays nothing for it."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import Unauthorized
from .core import UNAUTHORIZED, error_body, user_of

if TYPE_CHECKING:
    from ..engine import Engine, Keys
    from ..memory import Memory

PATH = "/mcp"
MAX_REQUEST_SECONDS = 120.0  # no MCP request holds a connection longer (a tool answers in ms)
NO_STREAM = (
    b'{"detail":"GET /mcp opens no event stream: this server is stateless and sends nothing '
    b'unasked. POST JSON-RPC requests to /mcp."}'
)
_USER: contextvars.ContextVar[str] = contextvars.ContextVar("sessionmem_mcp_user")


class McpEndpoint:
    """An ASGI app answering `/mcp`; `running()` belongs in the server's lifespan."""

    def __init__(self, store: Engine, keyring: Keys):
        self.store, self.keyring = store, keyring
        self._handle: Any = None  # the SDK's session manager, once started
        self._group: Any = None
        self._lock: anyio.Lock | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            self._group, self._lock = group, anyio.Lock()
            try:
                yield
            finally:
                group.cancel_scope.cancel()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        user = user_of(self.keyring, headers.get("x-api-key"), headers.get("authorization"))
        if user is None:
            await _send(send, *error_body(Unauthorized(UNAUTHORIZED)))
            return
        if scope.get("method") == "GET":
            # The stream a GET opens carries only what the server sends unasked — nothing, in
            # stateless mode — and it never ended (a descriptor and a connection slot each).
            # The MCP transport lets a server answer 405 instead.
            await _send(send, 405, NO_STREAM, [(b"allow", b"POST, DELETE")])
            return
        handle = await self._started()
        token = _USER.set(user)  # the tools' memory is this user's (tasks copy the context)
        try:
            with anyio.move_on_after(MAX_REQUEST_SECONDS):
                await handle(scope, receive, send)
        finally:
            _USER.reset(token)

    def _memory(self, write: bool) -> Memory:
        return self.store.for_user(_USER.get())

    async def _started(self) -> Any:
        if self._handle is not None:
            return self._handle
        if self._group is None or self._lock is None:
            raise RuntimeError("McpEndpoint.running() is not entered (the server's lifespan)")
        async with self._lock:
            if self._handle is None:
                # lazy: the mcp SDK costs ~500 ms at start-up
                from mcp.server.transport_security import TransportSecuritySettings

                from ..integrations.mcp_server import build

                server = build(self._memory, project=None, session=lambda: None)
                # Every request carries an API key, so a page that rebinds DNS to this server
                # still cannot use it: the Host check is not needed, and would refuse a team
                # server reached by its name.
                server.streamable_http_app(
                    stateless_http=True,
                    json_response=True,
                    transport_security=TransportSecuritySettings(
                        enable_dns_rebinding_protection=False
                    ),
                )
                manager = server.session_manager
                await self._group.start(_run, manager)
                self._handle = manager.handle_request
        return self._handle


async def _run(manager: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    async with manager.run():
        task_status.started()
        await anyio.sleep_forever()


async def _send(
    send: Any, status: int, raw: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    headers += extra or []
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="sessionmem"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
