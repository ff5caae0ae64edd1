"""The HTTP edge (docs/decisions.md, "The HTTP edge"): each request is evaluated once, on either
door, errors included; a body over the limit always reads as 413, even from a client that is
still sending; the same bad input gets the same message on every surface."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sessionmem import Client, InvalidInput, Store
from sessionmem.http.app import PREFIX, create_app
from sessionmem.keys import KeyRing

from conftest import sessionmem_cmd


class CountingStore(Store):
    """The real store, counting the reads each request makes of it (calls from outside only:
    `diff` reads its two snapshots through `get`)."""

    calls: Counter[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = Counter()
        self._depth = threading.local()

    def _count(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            self.calls[name] += 1
        self._depth.n = depth + 1
        try:
            return fn(*args, **kwargs)
        finally:
            self._depth.n = depth

    def latest(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("latest", super().latest, *args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("get", super().get, *args, **kwargs)

    def history(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("history", super().history, *args, **kwargs)

    def diff(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("diff", super().diff, *args, **kwargs)


def _clients(store: Store, key: str) -> list[tuple[str, TestClient]]:
    hot = TestClient(create_app(store))
    parent = FastAPI()
    parent.mount("/mounted", create_app(store))
    mounted = TestClient(parent, base_url="http://testserver/mounted")
    for client in (hot, mounted):
        client.headers["x-api-key"] = key
    return [("hot", hot), ("mounted", mounted)]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/session/latest", "latest"),
        ("/session/nope", "get"),
        ("/session/nope?version=2", "get"),
        ("/session/nope/history", "history"),
        ("/session/nope/diff", "diff"),
    ],
)
def test_a_404_on_each_read_route_asks_the_store_once(
    tmp_path: Path, path: str, method: str
) -> None:
    store = CountingStore(tmp_path / ".memory")
    key = KeyRing(store.layout).create("alice")[1]
    for door, client in _clients(store, key):
        with client:
            store.calls.clear()
            answer = client.get(PREFIX + path)
            assert answer.status_code == 404, (door, answer.text)
            assert store.calls == Counter({method: 1}), (door, store.calls)


def test_both_doors_answer_a_bad_id_and_a_bad_key_alike(tmp_path: Path) -> None:
    store = Store(tmp_path / ".memory")
    key = KeyRing(store.layout).create("alice")[1]
    answers: dict[str, list[Any]] = {}
    for door, client in _clients(store, key):
        with client:
            bad_id = client.get(PREFIX + "/session/bad%20id")
            no_key = client.get(PREFIX + "/session/s", headers={"x-api-key": "wrong"})
            answers[door] = [bad_id.status_code, bad_id.json(), no_key.status_code, no_key.json()]
    assert answers["hot"] == answers["mounted"]
    assert answers["hot"][0] == 422 and answers["hot"][1]["detail"][0]["loc"] == [
        "path",
        "session_id",
    ]
    assert answers["hot"][2] == 401


# --- the same message on every surface ----------------------------------------------------------

BAD_SESSION = "bad id"
SESSION_RULE = "session_id must be 1-128 characters matching [A-Za-z0-9][A-Za-z0-9._:@-]*"


def test_a_bad_session_id_reads_the_same_everywhere(tmp_path: Path) -> None:
    root = tmp_path / ".memory"
    store = Store(root)
    key = KeyRing(store.layout).create("alice")[1]
    seen: dict[str, str] = {}
    with pytest.raises(InvalidInput) as err:
        store.get("alice", BAD_SESSION)
    seen["Store"] = str(err.value)
    for door, client in _clients(store, key):
        with client:
            detail = client.get(PREFIX + "/session/bad%20id").json()["detail"][0]["msg"]
            seen[f"HTTP {door}"] = detail
            with pytest.raises(InvalidInput) as err:
                Client(str(client.base_url), key, http=client).get(BAD_SESSION)
            seen[f"Client {door}"] = str(err.value)
    cli = subprocess.run(
        [*sessionmem_cmd(), "show", BAD_SESSION, "--root", str(root), "--user", "alice"],
        capture_output=True, text=True,
    )  # fmt: skip
    seen["CLI"] = cli.stderr
    for surface, text in seen.items():
        assert SESSION_RULE in text, (surface, text)


# --- 413 always reads as 413 ----------------------------------------------------------------------


def _burn(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))  # keep a core busy, as a loaded machine is


@pytest.mark.slow
def test_a_body_over_the_limit_always_reads_as_413(tmp_path: Path, serve) -> None:
    root = tmp_path / ".memory"
    key = KeyRing(Store(root).layout).create("alice")[1]
    server = serve(root)
    body = b'{"session_id": "s", "open_tasks": ["' + b"x" * (3 << 20) + b'"]}'
    stop = threading.Event()
    burners = [threading.Thread(target=_burn, args=(stop,)) for _ in range(2)]
    for b in burners:
        b.start()
    statuses: list[Any] = []
    try:
        for _ in range(50):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request(
                    "POST", PREFIX + "/session", body=body,
                    headers={"x-api-key": key, "content-type": "application/json"},
                )  # fmt: skip
                statuses.append(conn.getresponse().status)
            except OSError as exc:  # a broken pipe or a reset instead of the answer
                statuses.append(type(exc).__name__)
            finally:
                conn.close()
        with httpx.Client(timeout=30) as client:
            for _ in range(50):
                try:
                    answer = client.post(
                        server.base + PREFIX + "/session", content=body,
                        headers={"x-api-key": key, "content-type": "application/json"},
                    )  # fmt: skip
                    statuses.append(answer.status_code)
                except httpx.TransportError as exc:
                    statuses.append(type(exc).__name__)
    finally:
        stop.set()
        for b in burners:
            b.join()
    assert Counter(statuses) == Counter({413: 100})
    assert json.loads(httpx.get(server.base + "/healthz", timeout=10).text)[
        "status"
    ] == "ok" and os.path.isdir(root)


# One table of bad input, every surface: Store, the Client over the app (both doors), raw HTTP on
# both doors, the CLI, the MCP tools. Each must say the library's words (a surface may add a hint).
LIMIT = "limit must be an integer from 1 to 1000."
EVENT = "event must be one of pre_compact, session_end, checkpoint; got 'lunch'."
VERSION = "version must be a whole number from 1."
SNAPSHOT = "snapshot_id must be a snapshot id (a UUID)."
CURSOR = "cursor is not a cursor this listing gave out; omit it to start over."
IDEM = "Idempotency-Key must be 1-255 characters when sent."
SESSION = "session_id must be 1-128 characters matching [A-Za-z0-9][A-Za-z0-9._:@-]* (it travels"
LONG_KEY = "k" * 300

BAD = [
    # (name, Store call, HTTP (method, path, headers), CLI argv, MCP (tool, args), words)
    ("limit", lambda s: s.history("alice", "s1", limit=0),
     ("GET", "/session/s1/history?limit=0", {}), ["history", "s1", "--limit", "0"],
     ("get_history", {"session_id": "s1", "limit": 0}), LIMIT),
    ("limit text", lambda s: s.sessions("alice", limit="abc"),
     ("GET", "/sessions?limit=abc", {}), ["sessions", "--limit", "abc"], None, LIMIT),
    ("event", lambda s: s.sessions("alice", event="lunch"),
     ("GET", "/sessions?event=lunch", {}), ["sessions", "--event", "lunch"],
     ("list_sessions", {"event": "lunch"}), EVENT),
    ("latest event", lambda s: s.latest("alice", event="lunch"),
     ("GET", "/session/latest?event=lunch", {}), ["latest", "--event", "lunch"], None, EVENT),
    ("version", lambda s: s.get("alice", "s1", version=0),
     ("GET", "/session/s1?version=0", {}), ["show", "s1", "--version", "0"],
     ("get_snapshot", {"session_id": "s1", "version": 0}), VERSION),
    ("snapshot id", lambda s: s.get("alice", "s1", snapshot_id="xyz"),
     ("GET", "/session/s1?snapshot_id=xyz", {}), ["show", "s1", "--snapshot-id", "xyz"],
     ("get_snapshot", {"session_id": "s1", "snapshot_id": "xyz"}), SNAPSHOT),
    ("cursor", lambda s: s.history("alice", "s1", cursor="garbage"),
     ("GET", "/session/s1/history?cursor=garbage", {}),
     ["history", "s1", "--cursor", "garbage"],
     ("get_history", {"session_id": "s1", "cursor": "garbage"}), CURSOR),
    ("idempotency key", lambda s: s.save("alice", {"session_id": "s1"}, idempotency_key=LONG_KEY),
     ("POST", "/session", {"Idempotency-Key": LONG_KEY}),
     ["save", "--session-id", "s1", "--idempotency-key", LONG_KEY], None, IDEM),
    ("session id", lambda s: s.history("alice", "bad id"),
     ("GET", "/session/bad%20id/history", {}), ["history", "bad id"],
     ("get_history", {"session_id": "bad id"}), SESSION),
]  # fmt: skip


def test_one_table_of_bad_input_reads_the_same_on_every_surface(
    tmp_path: Path, engine_factory: Any
) -> None:
    """On every engine: the memory folder's, and a database's (`conftest.ENGINES`)."""
    from test_mcp import _drive

    root = tmp_path / ".memory"
    store = engine_factory(root)
    url = getattr(store, "url", None)  # a database's engine
    where = ["--database", url] if url else ["--root", str(root)]
    key = store.keys().create("alice")[1]
    store.save("alice", {"session_id": "s1", "open_tasks": ["t"]})
    said: dict[tuple[str, str], str] = {}
    for name, call, _, _, _, _ in BAD:
        with pytest.raises(InvalidInput) as err:
            call(store)
        said[(name, "Store")] = str(err.value)
    for door, client in _clients(store, key):
        with client:
            api = Client(str(client.base_url), key, http=client)
            for name, _, (method, path, headers), _, _, _ in BAD:
                body = {"session_id": "s1"} if method == "POST" else None
                answer = client.request(method, PREFIX + path, json=body, headers=headers)
                assert answer.status_code == 422, (name, door, answer.text)
                said[(name, f"HTTP {door}")] = answer.json()["detail"][0]["msg"]
            for name, call, *_ in BAD:
                with pytest.raises(InvalidInput) as err:
                    if name == "idempotency key":
                        api.save({"session_id": "s1"}, idempotency_key=LONG_KEY)
                    else:
                        call(_AsUser(api))
                said[(name, f"Client {door}")] = str(err.value)
    for name, _, _, argv, _, _ in BAD:
        run = subprocess.run(
            [*sessionmem_cmd(), *argv, *where, "--user", "alice"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 1, (name, run.stderr)
        said[(name, "CLI")] = run.stderr
    tools = [(n, t) for n, *_, t, _ in BAD if t is not None]

    async def body(s: Any) -> list[tuple[str, str]]:
        return [(n, (await s.call_tool(tool, args)).content[0].text) for n, (tool, args) in tools]

    env = {"SESSIONMEM_USER": "alice", "PATH": os.environ["PATH"]}
    env["SESSIONMEM_DATABASE" if url else "SESSIONMEM_ROOT"] = url or str(root)
    for name, text in _drive(tmp_path, env, body):
        said[(name, "MCP")] = text
    words = {name: w for name, *_, w in BAD}
    wrong = {k: v for k, v in said.items() if words[k[0]] not in v}
    assert not wrong, wrong


class _AsUser:
    """The Store's calls of the table, made through a Client (which has no user argument)."""

    def __init__(self, client: Client):
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        return lambda user, *args, **kwargs: method(*args, **kwargs)
