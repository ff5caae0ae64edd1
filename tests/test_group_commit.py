"""Group commit: concurrent durable appends share fsyncs, and every acknowledged one
is on disk even when the process is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from sessionmem import Store

HERE = Path(__file__).parent


def ids_on_disk(root: Path) -> set[str]:
    found = set()
    for path in (root / "log").rglob("*.jsonl"):
        for line in path.read_bytes().split(b"\n")[:-1]:
            with contextlib.suppress(orjson.JSONDecodeError):
                found.add(orjson.loads(line)["id"])
    return found


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """An fsync that takes 20 ms, as on a slow disk: appends made meanwhile must share the
    next one (without it, a fast disk and a busy CPU could make every round hold one)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        time.sleep(0.02)

    monkeypatch.setattr(os, "fsync", fsync)


def test_threads_share_fsyncs(root: Path, slow_disk: None) -> None:
    store = Store(root, durability="durable")
    acked: list[str] = []
    guard = threading.Lock()

    def work(k: int) -> None:
        for i in range(40):
            snap = store.append("u", {"session_id": f"t{k}", "open_tasks": [str(i)]})
            with guard:
                acked.append(snap.snapshot_id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acked) == 640 and set(acked) <= ids_on_disk(root)
    assert store._appender.syncs < len(acked) // 4, "fsyncs were not shared"
    for k in range(16):
        assert store.get("u", f"t{k}").version == 40


def test_the_event_loop_path_shares_fsyncs(root: Path, slow_disk: None) -> None:
    store = Store(root, durability="durable")

    async def main() -> list[str]:
        snaps = await asyncio.gather(
            *(
                store.append_async("u", {"session_id": f"s{i % 5}", "open_tasks": [str(i)]})
                for i in range(200)
            )
        )
        return [s.snapshot_id for s in snaps]

    acked = asyncio.run(main())
    assert len(set(acked)) == 200 and set(acked) <= ids_on_disk(root)
    loops = store._writer._made_batches()[1]
    assert loops.sync_thread is not None and loops.sync_thread.syncs < 50
    store.close()
    assert sorted(v.version for v in (store.get("u", f"s{i}") for i in range(5))) == [40] * 5


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["threads", "async"])
def test_killed_mid_group_commit_loses_no_acknowledged_append(root: Path, mode: str) -> None:
    """Killed while threads share fsyncs, or while an event loop writes batches of appends
    with one `write` each: every id it printed (acknowledged) is on disk, and the log holds
    only whole lines in dense seqs."""
    Store(root).layout.ensure()
    rng = random.Random(11)
    acked: set[str] = set()
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "threaded_writer.py"), str(root), "8", mode],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        # Kill once it has acknowledged some appends (however slow this machine is), then at
        # a random moment of the ones that follow.
        assert proc.stdout is not None
        first = b"".join(proc.stdout.readline() for _ in range(20))
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked |= {line for line in (first + out).decode().split("\n")[:-1] if len(line) == 36}
    assert len(acked) > 100
    assert acked <= ids_on_disk(root)
    Store(root).append("u", {"session_id": "after"})  # still appendable and readable
    (log,) = (root / "log" / "u").glob("*.jsonl")
    seqs = [orjson.loads(line)["seq"] for line in log.read_bytes().splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_one_turn_of_the_loop_writes_its_appends_together(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends submitted during one turn of the event loop are written with one `write`;
    within the batch, a retry of the same Idempotency-Key finds the first one, a conflicting
    one fails alone, and seqs stay dense in the order the appends were made."""
    from sessionmem import Conflict, log

    writes: list[int] = []
    real = log._write_all

    def counting(fd: int, blob: bytes) -> OSError | None:
        writes.append(blob.count(b"\n"))
        return real(fd, blob)

    monkeypatch.setattr(log, "_write_all", counting)
    store = Store(root, durability="durable")

    async def main() -> list[object]:
        calls = [
            store.append_async("u", {"session_id": f"s{i % 3}", "open_tasks": [str(i)]})
            for i in range(30)
        ]
        body = {"session_id": "idem", "open_tasks": ["x"]}
        calls += [
            store.append_async("u", body, idempotency_key="k1"),
            store.append_async("u", body, idempotency_key="k1"),  # a retry within the batch
            store.append_async("u", {**body, "open_tasks": ["y"]}, idempotency_key="k1"),
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert writes[0] == 31 and sum(writes) == 31  # 30 + the first "k1"; its retries store none
    first, retry, conflicting = results[30:]
    assert retry.snapshot_id == first.snapshot_id  # type: ignore[union-attr]
    assert isinstance(conflicting, Conflict)
    assert all(not isinstance(r, BaseException) for r in results[:30])
    assert {r.snapshot_id for r in results[:31]} <= ids_on_disk(root)  # type: ignore[union-attr]
    (path,) = (root / "log" / "u").glob("*.jsonl")
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, 32))
    assert [e["data"]["open_tasks"] for e in lines[:30]] == [[str(i)] for i in range(30)]
    assert [store.get("u", f"s{i}").version for i in range(3)] == [10, 10, 10]


def test_event_loop_append_waits_in_a_thread_when_another_process_holds_the_lock(
    root: Path,
) -> None:
    import fcntl

    from sessionmem.log import lock_path

    store = Store(root, durability="durable")
    store.append("u", {"session_id": "s"})  # sets up the folder and the lock file
    lock = lock_path(store.layout, "u", store.writer)

    async def main() -> int:
        with open(lock, "a+b") as other:  # another process's descriptor, as far as flock cares
            fcntl.flock(other, fcntl.LOCK_EX)
            task = asyncio.ensure_future(
                asyncio.gather(*(store.append_async("u", {"session_id": "s"}) for _ in range(5)))
            )
            await asyncio.sleep(0.2)
            assert not task.done()  # waiting for the lock, without blocking the loop
            fcntl.flock(other, fcntl.LOCK_UN)
        return sorted(s.version for s in await task)

    assert asyncio.run(main()) == [2, 3, 4, 5, 6]  # the waiting batch, written together


def test_a_failed_fsync_fails_every_append_of_its_batch(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fsync error (EIO) reaches each waiting append as a StorageError — none is
    acknowledged, none waits forever — and the next batch is served again."""
    import errno

    from sessionmem import StorageError

    store = Store(root, durability="durable")
    store.append("u", {"session_id": "s"})
    real = os.fsync
    failing = [True]

    def fsync(fd: int) -> None:
        if failing[0]:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    async def batch(n: int) -> list[object]:
        calls = [store.append_async("u", {"session_id": f"s{i}"}) for i in range(n)]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)

    results = asyncio.run(batch(8))
    assert all(isinstance(r, StorageError) for r in results)
    failing[0] = False
    assert all(not isinstance(r, BaseException) for r in asyncio.run(batch(3)))
    store.close()


def test_threads_retrying_one_request_at_once_store_it_once(root: Path, slow_disk: None) -> None:
    """Threads' appends are written in batches (a leader writes what queued meanwhile); the same
    Idempotency-Key twice in a batch must still store one snapshot, the first, for all."""
    store = Store(root, durability="durable")
    store.append("u", {"session_id": "warm"})
    start = threading.Barrier(12)
    got: list[str] = []
    guard = threading.Lock()

    def retry() -> None:
        start.wait()
        snap = store.append("u", {"session_id": "s", "open_tasks": ["x"]}, idempotency_key="k")
        with guard:
            got.append(snap.snapshot_id)

    threads = [threading.Thread(target=retry) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 12 and len(set(got)) == 1
    (log,) = (root / "log" / "u").glob("*.jsonl")
    assert [orjson.loads(line)["session_id"] for line in log.read_bytes().splitlines()] == [
        "warm",
        "s",
    ]
    assert store.get("u", "s").version == 1
