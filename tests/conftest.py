from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import settings

from sessionmem import Store
from sessionmem.http.app import PREFIX, create_app
from sessionmem.keys import KeyRing

# CI runs are reproducible (the same generated examples every time); local runs explore.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def private_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The per-user store (where hooks and the CLI keep memory for a project without a
    .memory/) in a temporary folder: no test writes under the real home."""
    path = tmp_path_factory.mktemp("user-store") / "sessionmem"
    monkeypatch.setenv("SESSIONMEM_HOME", str(path))
    return path


# Every storage engine the contract suites run over (docs/decisions.md, "The engine seam"): a
# factory from a test's place to a fresh, empty engine.
ENGINES: dict[str, Callable[[Path], Any]] = {
    "files-durable": lambda root: Store(root, durability="durable"),
    "files-fast": lambda root: Store(root, durability="fast"),
}


class Postgres:
    """A throwaway PostgreSQL cluster (scripts/postgres) for the whole run, started on first use;
    a fresh database per test place, the same one again for the same place (two replicas)."""

    url: str | None = None
    _dbs: dict[Path, str] = {}
    _stores: list[Any] = []

    @classmethod
    def admin_url(cls) -> str:
        if cls.url is None:
            given = os.environ.get("SESSIONMEM_TEST_DATABASE")
            if given:
                cls.url = given
            else:
                out = subprocess.run([str(REPO / "scripts" / "postgres")], capture_output=True,
                                     text=True, timeout=600)  # fmt: skip
                assert out.returncode == 0, out.stderr
                cls.url = out.stdout.strip()
                folder = cls.url.split("host=")[1].split("&")[0]
                atexit.register(subprocess.run, [str(REPO / "scripts" / "postgres"), "stop",
                                                 folder], capture_output=True)  # fmt: skip
        return cls.url

    @classmethod
    def database(cls, place: Path) -> str:
        """The URL of the database for `place` (made, with the schema, on first use)."""
        import psycopg

        from sessionmem.pg import schema

        if place not in cls._dbs:
            name = f"t{len(cls._dbs)}_{os.getpid()}"
            with psycopg.connect(cls.admin_url(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            url = cls.admin_url().replace("/postgres?", f"/{name}?", 1)
            with psycopg.connect(url, autocommit=True) as conn:
                schema.upgrade(conn)
            cls._dbs[place] = url
        return cls._dbs[place]

    @classmethod
    def engine(cls, place: Path) -> Any:
        from sessionmem.pg.engine import PgStore

        if place not in cls._dbs:  # a new test: let go of the last one's connections
            for old in cls._stores:
                old.close()
            cls._stores.clear()
        store = PgStore(cls.database(place), pool_size=4)
        store.root = place  # (the contract makes a second engine "on the same root": a replica)
        cls._stores.append(store)
        return store


try:
    import psycopg  # noqa: F401 - the postgres extra (dev installs it)

    ENGINES["postgres"] = Postgres.engine
except ImportError:  # pragma: no cover - scripts/test installs the dev extra, which has it
    pass


@pytest.fixture(params=sorted(ENGINES))
def engine_factory(request: pytest.FixtureRequest) -> Callable[[Path], Any]:
    return ENGINES[request.param]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / ".memory"


@pytest.fixture
def store(root: Path) -> Store:
    return Store(root)


@pytest.fixture
def keys(store: Store) -> dict[str, str]:
    ring = KeyRing(store.layout)
    return {user: ring.create(user)[1] for user in ("alice", "bob")}


@pytest.fixture(params=["hot", "mounted"])
def http(
    request: pytest.FixtureRequest, store: Store, keys: dict[str, str]
) -> Iterator[TestClient]:
    """The app as `serve` runs it (its hot paths answer POST and the two GETs), and mounted
    under a prefix in another app, where every request takes the FastAPI routes instead: the
    HTTP suite runs over both doors."""
    if request.param == "hot":
        with TestClient(create_app(store)) as client:
            client.headers["x-api-key"] = keys["alice"]
            yield client
        return
    from fastapi import FastAPI

    parent = FastAPI()
    parent.mount("/mounted", create_app(store, follow=False))
    with TestClient(parent, base_url="http://testserver/mounted") as client:
        client.headers["x-api-key"] = keys["alice"]
        yield client


def url(path: str) -> str:
    return PREFIX + path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`sessionmem ARGS...` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from sessionmem.cli import main

    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO((input or "").encode()))
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    real_stdin = sys.stdin
    try:
        sys.stdin = stdin
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin = real_stdin
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


def sessionmem_cmd() -> list[str]:
    exe = BIN / "sessionmem"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sessionmem.cli"]


@pytest.fixture
def agent_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git repository with a committed .memory/ where an agent works, and the environment its
    hooks run in (user `dev`, no memory folder or server named by this shell)."""
    from helpers import commit_all, new_repo

    repo = new_repo(tmp_path / "app")
    (repo / "README.md").write_text("app\n")
    commit_all(repo, "start")
    env = {**os.environ, "SESSIONMEM_USER": "dev"}
    for name in ("SESSIONMEM_ROOT", "SESSIONMEM_URL", "CLAUDE_PROJECT_DIR"):
        env.pop(name, None)
    return repo, env


@pytest.fixture
def repo(agent_repo: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str]]:
    return agent_repo


def run_hook(
    payload: dict, cwd: Path, env: dict, agent: str = "claude-code"
) -> subprocess.CompletedProcess[str]:
    """`sessionmem hook AGENT` as the agent runs it: the payload on stdin, in `cwd`."""
    return subprocess.run(
        [*sessionmem_cmd(), "hook", agent],
        input=json.dumps(payload),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Server:
    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None, preexec_fn=None):  # type: ignore[no-untyped-def]
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root.parent / f"serve-{self.port}.log"
        cmd = [
            *sessionmem_cmd(),
            "serve",
            "--root",
            str(root),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *args,
        ]
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, **(env or {})},
                text=True,
                preexec_fn=preexec_fn,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, **kw)
            started.append(self)

    yield Tracked
    for s in started:
        s.stop()
