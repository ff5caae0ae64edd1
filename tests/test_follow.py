"""A running server sees what other processes and git do to the logs (issue 4)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from sessionmem import Store
from sessionmem.keys import KeyRing
from sessionmem.layout import Layout

from conftest import sessionmem_cmd
from helpers import commit_all, git, new_repo

API = "/api/v1/public/memory/v2"


def test_four_workers_read_their_own_writes_across_connections(tmp_path: Path, serve) -> None:
    root = tmp_path / ".memory"
    key = KeyRing(Layout(root)).create("alice")[1]
    server = serve(root, "--workers", "4")
    headers = {"x-api-key": key}
    pids = set()
    for i in range(60):
        # a new connection each time, so requests spread over the workers
        with httpx.Client(base_url=server.base, headers=headers) as c:
            posted = c.post(
                API + "/session", json={"session_id": f"s{i % 3}", "open_tasks": [f"t{i}"]}
            ).json()
        with httpx.Client(base_url=server.base, headers=headers) as c:
            latest = c.get(API + "/session/latest").json()
            by_id = c.get(API + f"/session/s{i % 3}").json()
        assert latest == posted
        assert by_id == posted
        assert posted["version"] == i // 3 + 1
    # all four workers answered at some point (uvicorn spreads connections by the kernel)
    out = subprocess.run(
        ["ps", "--ppid", str(server.proc.pid), "-o", "pid="], capture_output=True, text=True
    )
    pids = {p for p in out.stdout.split()}
    assert len(pids) >= 4
    events = (root / "log" / "alice").glob("*.jsonl").__next__().read_bytes().count(b"\n")
    assert events == 60


def test_server_sees_an_append_from_the_cli(tmp_path: Path, serve) -> None:
    root = tmp_path / ".memory"
    key = KeyRing(Layout(root)).create("alice")[1]
    server = serve(root)
    headers = {"x-api-key": key}
    assert httpx.get(server.base + API + "/session/latest", headers=headers).status_code == 404
    env = {**os.environ, "SESSIONMEM_USER": "alice", "SESSIONMEM_ROOT": str(root)}
    subprocess.run(
        [*sessionmem_cmd(), "save", "--session-id", "from-cli", "--task", "x"],
        env=env,
        check=True,
        capture_output=True,
    )
    r = httpx.get(server.base + API + "/session/latest", headers=headers)
    assert r.status_code == 200 and r.json()["session_id"] == "from-cli"


def test_server_follows_a_git_checkout(tmp_path: Path, serve) -> None:
    repo = new_repo(tmp_path / "repo")
    root = repo / ".memory"
    store = Store(root)
    store.append("alice", {"session_id": "s", "open_tasks": ["v1"]})
    commit_all(repo, "v1")
    old = git(repo, "rev-parse", "HEAD").strip()
    store.append("alice", {"session_id": "s", "open_tasks": ["v2"]})
    commit_all(repo, "v2")
    key = KeyRing(Layout(root)).create("alice")[1]
    server = serve(root)
    headers = {"x-api-key": key}
    get = lambda: httpx.get(server.base + API + "/session/s", headers=headers).json()  # noqa: E731
    assert get()["version"] == 2
    git(repo, "checkout", "-q", old)
    assert get()["version"] == 1 and get()["session_data"]["open_tasks"] == ["v1"]
    git(repo, "checkout", "-q", "main")
    assert get()["version"] == 2


def test_the_watcher_folds_without_a_read(tmp_path: Path) -> None:
    from sessionmem.watch import Follower

    root = tmp_path / ".memory"
    store = Store(root)
    follower = Follower(store)
    follower.start()
    try:
        assert follower.ready.wait(30)
        Store(root).append("alice", {"session_id": "s"})  # another writer
        deadline = time.monotonic() + 10
        while follower.folds == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert follower.folds >= 1, (
            follower._thread.is_alive(),
            follower.ready.is_set(),
            list((root / "log").rglob("*")),
        )
        view = store._views.get("alice")  # folded by the watcher, not by a read
        assert view.event_count() == 1
    finally:
        follower.stop()


@pytest.mark.parametrize("limit_extra", [10, 500])
def test_disk_full_fails_cleanly_and_leaves_no_partial_line(
    tmp_path: Path, limit_extra: int
) -> None:
    root = tmp_path / ".memory"
    Store(root).append("alice", {"session_id": "s", "open_tasks": ["fits"]})
    (path,) = (root / "log" / "alice").glob("*.jsonl")
    size = path.stat().st_size
    script = f"""
import resource, signal, sys
from sessionmem import Store, StorageError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({size + limit_extra}, {size + limit_extra}))
try:
    Store({str(root)!r}).append("alice", {{"session_id": "s", "open_tasks": ["x" * 2000]}})
except StorageError as exc:
    print("refused:", exc)
    sys.exit(3)
"""
    out = subprocess.run([os.sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 3, out.stderr
    assert "File too large" in out.stdout and "nothing was stored" in out.stdout
    assert path.stat().st_size == size
    store = Store(root)
    assert store.get("alice", "s").open_tasks == ["fits"]
    store.append("alice", {"session_id": "s", "open_tasks": ["after"]})
    assert store.get("alice", "s").version == 2
