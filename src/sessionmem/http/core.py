"""The hottest HTTP paths, answered below FastAPI's per-request machinery (docs/decisions.md,
"Speed").

`GET /session/latest` and `GET /session/{id}` (no query) come straight from the store's cached
JSON; `POST /session` is read, checked and written on the event loop (its fsync awaited from the
store's sync thread). The FastAPI routes document these paths and give the same answers — the
POST route calls the same `post_snapshot`. A request taken here is answered here, errors
included (an unknown key, an unknown session, a bad id): it is evaluated once.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..codec import dumps_view, loads
from ..errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    Stale,
    StorageError,
    Unauthorized,
    hint,
)
from ..rules import INT_MAX, INT_MIN, PREFIX, check_idempotency_key

if TYPE_CHECKING:
    from ..engine import Engine, Keys

UNAUTHORIZED = (
    "Missing or unknown API key. Send it in the x-api-key header (or as "
    "`Authorization: Bearer KEY`); create one with `sessionmem keys create USER`."
)
_STATUS = {InvalidInput: 422, NotFound: 404, Conflict: 409, Unauthorized: 401, StorageError: 503}
_JSON = (b"content-type", b"application/json")
# Every 503 (a storage failure, too many open files, the log changing under a read) says when to
# try again: most such conditions pass within a second.
RETRY_AFTER = (b"retry-after", b"1")


def extra_headers(status: int) -> dict[str, str] | None:
    """The headers an answer of this status carries besides its JSON (both doors use it)."""
    return {"retry-after": "1"} if status == 503 else None


# What an HTTP client can do about a miss: the library's messages name no endpoint.
HINTS = {
    "session": "GET /sessions lists the ones there are.",
    "snapshot": "POST /session saves one.",
    "filters": "Try without them.",
    "version": "GET /session/{id}/history lists its versions.",
}


PATH_FIELDS = ("session_id",)  # fields that travel in the URL path of the routes naming them


def error_body(exc: Exception, where: str = "body") -> tuple[int, bytes]:
    """(status, JSON) of the answer to a library error."""
    status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 400)
    detail: Any
    if isinstance(exc, InvalidInput):
        detail = [
            e.as_dict("path" if where != "body" and e.field in PATH_FIELDS else where)
            for e in exc.errors
        ]
    else:
        detail = hint(exc, HINTS)
    return status, dumps_view({"detail": detail})


_LONG_DIGITS = re.compile(rb"[0-9]{19}")
# A JSON string, or an integer literal (not the start of a fraction or an exponent).
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|(?<![0-9.eE+-])(-?[0-9]+)(?![0-9.eE])')


def _big_integer(raw: bytes) -> bytes | None:
    """An integer literal of the body outside the signed 64-bit range, if any (only called
    when the body holds 19 digits in a row somewhere)."""
    for match in _TOKENS.finditer(raw):
        digits = match.group(1)
        if digits is not None and len(digits) >= 19 and not INT_MIN <= int(digits[:30]) <= INT_MAX:
            return digits
    return None


async def post_snapshot(
    store: Engine, user: str | None, idempotency_key: str | None, raw: bytes
) -> tuple[int, bytes]:
    """The whole of `POST /session` once the body is read: (status, JSON)."""
    if user is None:
        return 401, dumps_view({"detail": UNAUTHORIZED})
    if idempotency_key is not None:
        try:
            check_idempotency_key(idempotency_key)
        except InvalidInput as err:
            return error_body(err, "header")
    try:
        body = loads(raw)
    except ValueError as exc:
        return error_body(InvalidInput(FieldError("body", f"is not valid JSON ({exc}).")))
    if _LONG_DIGITS.search(raw):
        big = _big_integer(raw)
        if big is not None:  # orjson read it as a float: it would come back changed
            return error_body(
                InvalidInput(
                    FieldError(
                        "body",
                        f"holds the integer {big[:40].decode()}{'...' if len(big) > 40 else ''}, "
                        "outside the signed 64-bit range; send it as a string.",
                    )
                )
            )
    try:
        answer = (await store.save_async(user, body, idempotency_key=idempotency_key)).json()
    except (InvalidInput, NotFound, Conflict, Unauthorized, StorageError, Stale) as exc:
        return error_body(exc)
    return 201, answer


DRAIN_BYTES = 16 * 1024 * 1024  # an over-limit body read and dropped before the 413 is sent


async def read_body(
    length: str | None, chunks: AsyncIterator[bytes], limit: int
) -> bytes | tuple[int, bytes]:
    """A request body within `limit` bytes, or the (status, JSON) to answer instead — the one
    reader both doors use (`chunks`: the ASGI messages here, Starlette's stream in `api`).

    A body over the limit is read on and dropped, up to DRAIN_BYTES, before the 413 goes out
    (what nginx calls a lingering close): a server that answers and closes while the client is
    still sending makes the client see a broken pipe or a reset instead of the 413."""
    if length is not None:
        if not (length.isascii() and length.isdigit()):
            return 400, dumps_view({"detail": "The Content-Length header is not a number."})
        if int(length) > limit:
            if len(length) <= 12 and int(length) <= DRAIN_BYTES:
                await _drain(chunks, DRAIN_BYTES)
            return 413, too_big(limit)
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            await _drain(chunks, DRAIN_BYTES - size)
            return 413, too_big(limit)
        parts.append(chunk)
    return b"".join(parts)


async def _drain(chunks: AsyncIterator[bytes], budget: int) -> None:
    """Read and drop what the client still sends, up to `budget` bytes (a client gone is fine)."""
    try:
        async for chunk in chunks:
            budget -= len(chunk)
            if budget <= 0:
                return
    except Exception:  # noqa: BLE001 - the client went away meanwhile: nothing left to read
        return


class _ClientGone(Exception):
    """The client disconnected before its body arrived."""


async def _received(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def too_big(limit: int) -> bytes:
    detail = f"The body is larger than the limit of {limit} bytes. Send a smaller snapshot."
    return dumps_view({"detail": detail})


class HotPaths:
    """ASGI middleware in front of the FastAPI routes (see the module docstring)."""

    def __init__(self, app: Any, store: Engine, keyring: Keys, max_body: int):
        self.app = app
        self.store = store
        self.keyring = keyring
        self.max_body = max_body
        self.session_prefix = PREFIX + "/session/"
        self.post_path = PREFIX + "/session"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["query_string"]:
            method, path = scope["method"], scope["path"]
            if (
                method == "GET"
                and path.startswith(self.session_prefix)
                and "/" not in path[len(self.session_prefix) :]
            ):
                status, raw = await self._read(scope)
                return await _respond(send, status, raw)
            elif method == "POST" and path == self.post_path:
                status, raw = await self._post(scope, receive)
                return await _respond(send, status, raw)
        await self.app(scope, receive, send)

    def _user(self, scope: Any) -> str | None:
        return user_of(self.keyring, _header(scope, b"x-api-key"), _header(scope, b"authorization"))

    async def _read(self, scope: Any) -> tuple[int, bytes]:
        """GET /session/latest or /session/{id}, answered whole: (status, JSON)."""
        session_id = scope["path"][len(self.session_prefix) :]  # (Starlette's path: decoded)
        try:
            user = self._user(scope)
            if user is None:
                return 401, dumps_view({"detail": UNAUTHORIZED})
            return 200, await self.store.answer_async(user, session_id)
        except (InvalidInput, NotFound, Stale, StorageError) as exc:
            return error_body(exc, "query")

    async def _post(self, scope: Any, receive: Any) -> tuple[int, bytes]:
        try:
            user = self._user(scope)
        except StorageError as exc:  # the key file cannot be read, and none was read before
            return error_body(exc)
        if user is None:
            return 401, dumps_view({"detail": UNAUTHORIZED})
        length = _header(scope, b"content-length")
        try:
            body = await read_body(length, _received(receive), self.max_body)
        except _ClientGone:
            return 400, dumps_view({"detail": "The client went away."})
        if isinstance(body, tuple):
            return body
        idem = _header(scope, b"idempotency-key")
        return await post_snapshot(self.store, user, idem, body)


def user_of(keyring: Keys, api_key: str | None, authorization: str | None) -> str | None:
    """The user a request's key belongs to: the `x-api-key` header, or `Authorization: Bearer
    KEY` (clients of the hosted service send one or both; either known key is enough)."""
    for key in (api_key, bearer(authorization)):
        if key:
            user = keyring.authenticate(key)
            if user is not None:
                return user
    return None


def bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None  # Basic and the like are not our keys
    return token.strip() or None


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _respond(send: Any, status: int, raw: bytes) -> None:
    headers = [(b"content-length", str(len(raw)).encode()), _JSON]
    if status == 503:
        headers.append(RETRY_AFTER)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
