"""Where a request's work runs: the engine's reads off the event loop when they wait on a
network (`off_loop`), and the slow reads — searches — on threads of their own, cancelled when the
client goes away (`slow_read`; docs/decisions.md, "A hostile workspace")."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..engine import Engine

T = TypeVar("T")


async def off_loop(store: Engine, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """`fn(*args, **kw)`: on a thread when the engine's reads wait on a network, else at once
    (the file engine answers from memory: a thread would only add its hop)."""
    if store.blocking:
        return await run_in_threadpool(fn, *args, **kw)
    return fn(*args, **kw)


# Searches run on threads of their own, at most this many at once: however slow, they never take
# the threads every other request needs (docs/decisions.md, "A hostile workspace").
SLOW_READS = 4
# One per event loop (a worker process has one; tests start many, hence weak keys).
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


async def slow_read(request: Request, call: Callable[[], T], cancel: threading.Event) -> T:
    """Run `call` on the slow-read threads; when the client goes away, set `cancel` so the work
    stops instead of running on for nobody."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(SLOW_READS)
    result: list[T] = []
    errors: list[BaseException] = []

    async def work(scope: anyio.CancelScope) -> None:
        try:
            result.append(await anyio.to_thread.run_sync(call, limiter=limiter))
        except BaseException as exc:  # handed to the request's own error map below
            errors.append(exc)
        scope.cancel()

    async def watch() -> None:
        while not cancel.is_set():
            message = await request.receive()
            if message["type"] == "http.disconnect":
                cancel.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(work, tg.cancel_scope)
        tg.start_soon(watch)
    if errors:
        raise errors[0]
    return result[0]
