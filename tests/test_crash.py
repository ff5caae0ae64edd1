"""Concurrency and crash safety of the log, with real processes (docs/storage.md, "Writing")."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from sessionmem import Store
from sessionmem.codec import decode

HERE = Path(__file__).parent


def writer(root: Path, user: str, session: str, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "writer_proc.py"), str(root), user, session, str(count)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def all_lines(root: Path, user: str) -> list[bytes]:
    return [
        line
        for path in sorted((root / "log" / user).glob("*.jsonl"))
        for line in path.read_bytes().split(b"\n")
        if line
    ]


def test_torn_tail_is_set_aside_never_glued(root: Path) -> None:
    store = Store(root)
    store.append("alice", {"session_id": "s", "open_tasks": ["one"]})
    (path,) = (root / "log" / "alice").glob("*.jsonl")
    with open(path, "ab") as f:  # what a writer killed mid-write leaves behind
        f.write(b'{"data":{"open_tasks":["torn"]},"id":"0193')
    reader = Store(root)
    assert reader.get("alice", "s").open_tasks == ["one"]  # the partial line does not count
    store.append("alice", {"session_id": "s", "open_tasks": ["two"]})
    store.append("alice", {"session_id": "s", "open_tasks": ["three"]})
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    for line in raw.splitlines():
        decode(line)  # every line is a whole event: nothing glued to the torn piece
    assert [e.version for e in reader.history("alice", "s").items] == [3, 2, 1]
    assert reader.get("alice", "s", version=2).open_tasks == ["two"]
    (torn,) = (root / ".local" / "quarantine").glob("*.torn")
    assert torn.read_bytes() == b'{"data":{"open_tasks":["torn"]},"id":"0193'


def test_four_processes_append_2000_events_exactly_once(root: Path) -> None:
    Store(root).layout.ensure()
    procs = [writer(root, "alice", f"w{n}", 500) for n in range(4)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    acked = {line.split()[0] for out in outs for line in out.decode().splitlines()}
    assert len(acked) == 2000
    events = [decode(line) for line in all_lines(root, "alice")]
    assert len(events) == 2000
    assert {e.id for e in events} == acked
    seqs = sorted(e.seq for e in events)  # one root = one writer file, shared under the lock
    assert seqs == list(range(1, 2001))
    store = Store(root)
    for n in range(4):
        items = []
        page = store.history("alice", f"w{n}", limit=1000)
        items = page.items
        assert len(items) == 500
        tasks = [store.get("alice", f"w{n}", version=v).open_tasks[0] for v in (1, 250, 500)]
        assert tasks == [f"w{n}-0", f"w{n}-249", f"w{n}-499"]


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_snapshot(root: Path) -> None:
    Store(root).layout.ensure()
    rng = random.Random(7)
    acked: set[str] = set()
    for round_ in range(12):
        procs = [writer(root, "alice", f"r{round_}-{n}", 100_000) for n in range(3)]
        # Kill only once every writer has acknowledged something (however slow this machine
        # is), then at a random moment of the appends that follow.
        firsts = [p.stdout.readline() for p in procs if p.stdout is not None]
        assert all(b" " in line for line in firsts), "a writer died before its first append"
        time.sleep(rng.uniform(0.0, 0.3))
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p, first in zip(procs, firsts, strict=True):
            out, _ = p.communicate()
            lines = (first + out).decode().splitlines()
            acked |= {line.split()[0] for line in lines if " " in line}
    store = Store(root)
    stored = set()
    for line in all_lines(root, "alice"):
        with contextlib.suppress(orjson.JSONDecodeError):  # a torn tail: never acknowledged
            stored.add(orjson.loads(line)["id"])
    assert acked, "the writers were killed before acknowledging anything"
    assert acked <= stored
    # and the store still reads, and still appends, after all that
    store.append("alice", {"session_id": "after"})
    assert store.get("alice", "after").version == 1
    for line in all_lines(root, "alice")[:-1]:
        decode(line)
