"""One contract, every surface: the Store contract (tests/contract.py) run unchanged over the
user-bound memory the CLI and the hooks hold (`Store.for_user`) and over `Client` talking to
`create_app(store)` in this process — so no surface can drift from the library's rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from sessionmem import Client, Store
from sessionmem.http.app import create_app
from sessionmem.memory import Memory

from contract import StoreContract


class Surface:
    """The Store's user-first vocabulary over one `Memory` per user."""

    def __init__(self, root: Path, memory_for: Callable[[str], Memory], engine: Any = None):
        self.root = root
        self.engine = engine
        self._memory_for = memory_for
        self._memories: dict[str, Memory] = {}

    def _m(self, user: str) -> Memory:
        if user not in self._memories:
            self._memories[user] = self._memory_for(user)
        return self._memories[user]

    def append(self, user: str, body: dict[str, Any], *, idempotency_key: str | None = None):  # type: ignore[no-untyped-def]
        return self._m(user).save(body, idempotency_key=idempotency_key)

    def latest(self, user: str, **filters: Any):  # type: ignore[no-untyped-def]
        return self._m(user).latest(**filters)

    def get(self, user: str, session_id: str, **kw: Any):  # type: ignore[no-untyped-def]
        return self._m(user).get(session_id, **kw)

    def history(self, user: str, session_id: str, **kw: Any):  # type: ignore[no-untyped-def]
        return self._m(user).history(session_id, **kw)

    def diff(self, user: str, session_id: str, from_: Any = None, to: Any = None):  # type: ignore[no-untyped-def]
        return self._m(user).diff(session_id, from_, to)

    def sessions(self, user: str, **kw: Any):  # type: ignore[no-untyped-def]
        return self._m(user).sessions(**kw)

    def delete(self, user: str, session_id: str) -> int:
        return self._m(user).delete(session_id)


class TestUserMemory(StoreContract):
    """What `sessionmem save/show/...` and the hooks hold in direct mode."""

    def make_store(self, root: Path) -> Store:
        engine = self.factory(root)
        return Surface(root, engine.for_user, engine)  # type: ignore[return-value]


class TestClientOverTheApp(StoreContract):
    """`Client` over HTTP, one API key per user, against the app factory in this process."""

    def make_store(self, root: Path) -> Store:
        store = self.factory(root)
        ring = store.keys()
        app = create_app(store, keys=ring, follow=False)  # one ring: a new key counts at once

        def memory(user: str) -> Memory:
            key = ring.create(user)[1]  # an invalid user id is refused here, as by the store
            return Client("http://testserver", key, http=TestClient(app))

        return Surface(root, memory, store)  # type: ignore[return-value]
