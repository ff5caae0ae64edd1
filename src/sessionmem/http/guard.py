"""What keeps `sessionmem serve` up under idle, slow and hostile clients (docs/decisions.md,
"Connections"):

- a connection must send a request's headers within the header timeout of its first byte (or of
  connecting), and a request body may not stall for longer than the body timeout between two
  chunks; either way the connection is answered 408 and closed. An idle keep-alive connection is
  closed by uvicorn's own keep-alive timeout.
- the number of connections is capped below the process's descriptor limit, so a flood gets
  uvicorn's quick 503 instead of taking the descriptors the store needs for its files;
- a log line repeated within a few seconds (e.g. asyncio's "socket.accept() out of system
  resource") is written once, then counted.

Settings come from `serve`'s flags through the environment, so every worker process has them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from typing import Any

import h11
from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..changes import stop_streams

HEADER_TIMEOUT_ENV = "SESSIONMEM_HEADER_TIMEOUT"
BODY_TIMEOUT_ENV = "SESSIONMEM_BODY_TIMEOUT"
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_KEEP_ALIVE = 5
RESERVED_DESCRIPTORS = 48  # for log files, locks, the watcher, the listening socket...
PROTOCOL = "sessionmem.http.guard:GuardedH11Protocol"
_TIMEOUT_BODY = b'{"detail":"The request did not arrive in time; the connection closes."}'
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


def _seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def default_max_connections() -> int:
    """Below the soft descriptor limit, leaving room for the files the store opens."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(8, min(soft - RESERVED_DESCRIPTORS, 10_000))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers and for each body chunk."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._header_timeout = _seconds(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT)
        self._body_timeout = _seconds(BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT)
        self._guard: asyncio.TimerHandle | None = None
        self._guarding: str | None = None  # "headers" or "body"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        stop_streams()  # a live stream never completes by itself: end it, then stop gracefully
        super().shutdown()

    def _follow(self) -> None:
        """Arm the timer the connection's state calls for."""
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.our_state is h11.IDLE:
            if self._guarding != "headers" and self._has_partial_request():
                self._arm("headers")  # from the first byte of this request
            elif not self._has_partial_request():
                self._disarm()  # between requests: uvicorn's keep-alive timeout applies
        elif state is h11.SEND_BODY:
            self._arm("body")  # again at every chunk: the deadline is for a stall
        else:
            self._disarm()

    def _has_partial_request(self) -> bool:
        return bool(getattr(self.conn, "_receive_buffer", b""))

    def _arm(self, what: str) -> None:
        self._disarm()
        delay = self._header_timeout if what == "headers" else self._body_timeout
        self._guard = self.loop.call_later(delay, self._timed_out)
        self._guarding = what

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None
        self._guarding = None

    def _timed_out(self) -> None:
        self._guard = None
        if self.transport.is_closing():
            return
        if self._guarding == "headers" or self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_ANSWER)
        self._guarding = None
        self.transport.close()


async def at_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The answer past `--max-connections`: the same JSON shape and Retry-After as every 503."""
    body = b'{"detail":"The server is at its connection limit; retry shortly."}'
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# uvicorn answers past its concurrency limit with the ASGI app this module global names (plain
# text, no Retry-After); ours replaces it, for the h11 protocol this server runs.
setattr(h11_impl, "service_unavailable", at_capacity)  # noqa: B010 - not an exported name


class RepeatFilter(logging.Filter):
    """Lets a message through once per `window` seconds; the next one after the window says how
    many were held back. (Out of descriptors, asyncio logs a failed accept every time it tries.)"""

    def __init__(self, window: float = 10.0):
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, int], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.getMessage(), record.levelno)  # as written: two files are two problems
        now = time.monotonic()
        last, held = self._seen.get(key, (-1e9, 0))
        if now - last < self.window:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.window:.0f} s)"
        return True


def quiet_repeats() -> None:
    """Install the repeat filter on the loggers a flood of failures writes to (once)."""
    for name in ("asyncio", "uvicorn.error", "sessionmem"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())
