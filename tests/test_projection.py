"""Projections are pure functions of the logs (docs/storage.md, "Reading"): order by (ts, writer,
seq), duplicates count once, bad lines are skipped and reported, replaced files are re-read."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionmem import Store
from sessionmem.log import touch_folder
from sessionmem.projection import FULL_CHECK_SECONDS

from helpers import BASE_MS, ev, state, write_logs
from oracle import assert_matches


def make_events(rng: random.Random, n: int) -> dict[str, list[bytes]]:
    files: dict[str, list[bytes]] = {"wa": [], "wb": [], "wc": []}
    seqs = dict.fromkeys(files, 0)
    ms = BASE_MS
    for i in range(n):
        w = rng.choice(list(files))
        seqs[w] += 1
        ms += rng.choice([0, 0, 1, 5])  # ties in ts are broken by writer, then seq
        session = rng.choice(["s1", "s2", "s3"])
        kind = "delete" if rng.random() < 0.08 else "snapshot"
        files[w].append(ev(session, w, seqs[w], ms, [f"t{i}"], kind))
    return files


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 40), dup=st.floats(0, 0.5))
def test_shuffled_and_duplicated_lines_give_the_same_projection(
    tmp_path_factory, seed: int, n: int, dup: float
) -> None:
    rng = random.Random(seed)
    files = make_events(rng, n)
    a = tmp_path_factory.mktemp("a") / ".memory"
    write_logs(a, files)
    b = tmp_path_factory.mktemp("b") / ".memory"
    shuffled = {}
    all_lines = [line for lines in files.values() for line in lines]
    for name, lines in files.items():
        extra = [rng.choice(all_lines) for _ in range(int(len(lines) * dup))]  # cherry-picks
        mixed = (
            lines + extra + [rng.choice(lines) for _ in range(int(len(lines) * dup))]
            if lines
            else extra
        )
        rng.shuffle(mixed)
        shuffled[name] = mixed
    write_logs(b, shuffled)
    assert state(Store(a)) == state(Store(b))
    # and both are the independent oracle's fold (heads and listings of a cold fold are worked
    # out at its end: in order, or row by row when a file is not)
    assert_matches(Store(a), "alice")
    assert_matches(Store(b), "alice")


def test_incremental_fold_matches_a_fresh_read(root: Path) -> None:
    rng = random.Random(1)
    files = make_events(rng, 60)
    store = Store(root)
    folder = root / "log" / "alice"
    folder.mkdir(parents=True)
    # Feed the lines in a few at a time, reading in between.
    pending = {name: list(lines) for name, lines in files.items()}
    while any(pending.values()):
        for name, lines in pending.items():
            take, pending[name] = lines[:3], lines[3:]
            with open(folder / f"{name}.jsonl", "ab") as f:
                f.write(b"".join(take))
            touch_folder(str(folder))  # what every sessionmem writer does after appending
        state(store)
    assert state(store) == state(Store(root))


def test_bad_lines_are_skipped_and_reported(root: Path) -> None:
    good = [ev("s", "wa", i, BASE_MS + i, [f"t{i}"]) for i in range(1, 4)]
    lines = [
        good[0],
        b"\n",
        b"not json\n",
        b'{"v":1}\n',
        b"   \n",
        good[1],
        ev("s", "wa", 9, BASE_MS + 9, ["bob's"], user="bob"),
        b'{"v":99,"id":"x"}\n',
        good[2],
    ]
    write_logs(root, {"wa": lines})
    store = Store(root)
    assert [h.version for h in store.history("alice", "s").items] == [3, 2, 1]
    reasons = [p.reason for p in store.problems("alice")]
    assert len(reasons) == 4
    assert any("not JSON" in r for r in reasons)
    assert any("bob" in r for r in reasons)
    assert any("schema version 99" in r for r in reasons)


def test_file_replaced_by_git_is_reread(root: Path) -> None:
    store = Store(root)
    for i in range(5):
        store.append("alice", {"session_id": "s", "open_tasks": [f"t{i}"]})
    (path,) = (root / "log" / "alice").glob("*.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    assert store.get("alice", "s").version == 5
    # git checkout of an older commit: a new file (new inode) with fewer lines
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(lines[:2]))
    os.replace(tmp, path)
    assert store.get("alice", "s").version == 2
    assert store.get("alice", "s").open_tasks == ["t1"]
    # and back again
    tmp.write_bytes(b"".join(lines))
    os.replace(tmp, path)
    assert store.get("alice", "s").version == 5


def test_file_shrunk_or_rewritten_in_place_is_reread(root: Path) -> None:
    store = Store(root)
    for i in range(4):
        store.append("alice", {"session_id": "s", "open_tasks": [f"t{i}"]})
    (path,) = (root / "log" / "alice").glob("*.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    with open(path, "r+b") as f:  # same inode, truncated
        f.truncate(len(b"".join(lines[:3])))
    assert store.view("alice", force=True)  # the watcher's way of noticing an in-place edit
    assert store.get("alice", "s").version == 3
    other = ev("s", "zz", 1, BASE_MS, ["rewritten"])
    with open(path, "r+b") as f:  # same inode, same-or-larger size, different bytes
        f.seek(0)
        f.write(other + b"".join(lines[:3]))
    time.sleep(FULL_CHECK_SECONDS)  # without the watcher: every file is looked at this often
    hist = store.history("alice", "s").items
    assert len(hist) == 4
    assert store.get("alice", "s", version=1).open_tasks == ["rewritten"]


def test_deleted_file_disappears(root: Path) -> None:
    write_logs(
        root,
        {"wa": [ev("s", "wa", 1, BASE_MS, ["a"])], "wb": [ev("t", "wb", 1, BASE_MS + 1, ["b"])]},
    )
    store = Store(root)
    assert store.latest("alice").session_id == "t"
    (root / "log" / "alice" / "wb.jsonl").unlink()
    assert store.latest("alice").session_id == "s"


def test_hlc_never_orders_a_new_snapshot_behind_one_already_seen(root: Path) -> None:
    future = BASE_MS + 10**9  # another clone whose clock runs ahead
    write_logs(root, {"zz-ahead": [ev("s", "zz-ahead", 1, future, ["from the future"])]})
    store = Store(root)
    snap = store.append("alice", {"session_id": "s", "open_tasks": ["mine, later"]})
    assert snap.version == 2
    assert store.latest("alice").open_tasks == ["mine, later"]


def test_a_change_in_the_same_clock_tick_as_the_last_read_is_seen(root: Path) -> None:
    """git can replace a log within one tick of the kernel's coarse clock, leaving the folder's
    mtime as it was when the last read looked: a fresh mtime is never trusted."""
    store = Store(root)
    store.append("alice", {"session_id": "s", "open_tasks": ["one"]})
    folder = root / "log" / "alice"
    (path,) = folder.glob("*.jsonl")
    assert store.get("alice", "s").version == 1  # a read right after the change
    stamp = folder.stat().st_mtime_ns
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(path.read_bytes() + ev("s", "zz", 1, BASE_MS + 10**12, ["two"]))
    os.replace(tmp, path)
    os.utime(folder, ns=(stamp, stamp))  # the same tick: the folder looks unchanged
    assert store.get("alice", "s").version == 2


def test_a_part_has_exactly_the_columns_the_cache_and_the_child_write(tmp_path: Path) -> None:
    from array import array

    from sessionmem.rows import COLUMNS, Part

    part = Part(1, tmp_path / "w.jsonl")
    arrays = {k: v.typecode for k, v in vars(part).items() if isinstance(v, array)}
    assert arrays == dict(COLUMNS)
