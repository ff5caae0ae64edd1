"""The projection cache (issue 6): a warm start folds only the tail, and a stale, corrupt or
mismatched cache is never believed — answers always equal a fold of the logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sessionmem import Store
from sessionmem.cache import cache_path

from helpers import state
from oracle import assert_matches, projected

N = 60


@pytest.fixture
def filled(root: Path) -> Path:
    store = Store(root, durability="fast")
    for i in range(N):
        store.append(
            "alice",
            {"session_id": f"s{i % 7}", "open_tasks": [f"t{i}"]},
            idempotency_key=f"k{i}" if i % 10 == 0 else None,
        )
    store.delete("alice", "s3")
    store.close()  # writes the cache
    assert cache_path(root, "alice").exists()
    return root


def test_warm_start_loads_the_cache_and_answers_the_same(filled: Path) -> None:
    warm = Store(filled)
    view = warm._views.get("alice")
    assert view.state.loaded_rows == N + 1  # every row came from the cache, none from the log
    cold = Store(filled, cache=False)
    assert state(warm) == state(cold)
    assert_matches(warm, "alice")
    # idempotency keys survive through the cache too
    again = warm.append("alice", {"session_id": "s0", "open_tasks": ["t0"]}, idempotency_key="k0")
    assert again.version == 1


def test_a_stale_cache_folds_the_tail(filled: Path) -> None:
    other = Store(filled, cache=False)
    for i in range(5):
        other.append("alice", {"session_id": "tail", "open_tasks": [f"x{i}"]})
    warm = Store(filled)
    assert warm.get("alice", "tail").version == 5
    assert warm._views.get("alice").state.loaded_rows == N + 1
    assert state(warm) == state(Store(filled, cache=False))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty", "other-user"])
def test_a_corrupt_cache_is_ignored(filled: Path, damage: str) -> None:
    path = cache_path(filled, "alice")
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) - 100]
    elif damage == "garbage":
        raw = bytearray(b"\x00garbage" * 50)
    elif damage == "empty":
        raw = bytearray()
    elif damage == "other-user":
        bobs = Store(filled, durability="fast")
        bobs.append("bob", {"session_id": "b"})
        bobs.close()
        raw = bytearray(cache_path(filled, "bob").read_bytes())
    path.write_bytes(bytes(raw))
    store = Store(filled)
    assert store._views.get("alice").state.loaded_rows == 0
    assert state(store) == state(Store(filled, cache=False))
    assert_matches(store, "alice")


def test_a_log_replaced_by_git_is_read_again(filled: Path) -> None:
    (log,) = (filled / "log" / "alice").glob("*.jsonl")
    lines = log.read_bytes().splitlines(keepends=True)
    tmp = log.with_suffix(".tmp")
    tmp.write_bytes(b"".join(lines[:20]))  # an older commit's version of the file
    os.replace(tmp, log)
    store = Store(filled)
    assert sum(len(v) for v in projected(store, "alice").values()) == 20
    assert_matches(store, "alice")


def test_a_log_rewritten_in_place_is_read_again(filled: Path) -> None:
    (log,) = (filled / "log" / "alice").glob("*.jsonl")
    lines = log.read_bytes().splitlines(keepends=True)
    with open(log, "r+b") as f:  # same inode; the bytes before the cached offset differ
        f.seek(0)
        f.write(b"".join(lines[1:]) + lines[0])
    store = Store(filled)
    assert_matches(store, "alice")


def test_a_deleted_log_disappears(filled: Path) -> None:
    for log in (filled / "log" / "alice").glob("*.jsonl"):
        log.unlink()
    store = Store(filled)
    assert store.sessions("alice").items == []


# Forced to fork here even if an earlier test left a thread running (the library itself forks
# only with one thread); Python 3.12+ warns about that.
@pytest.mark.filterwarnings("ignore:.*use of fork.*:DeprecationWarning")
@pytest.mark.parametrize("fork", [True, False], ids=["forked", "subprocess"])
def test_a_big_cold_fold_shared_with_a_child_gives_the_same_answers(
    root: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    import sessionmem.childfold as childfold
    import sessionmem.fold as fold

    from helpers import ev, write_logs

    lines = []
    for i in range(1, 400):
        lines.append(
            ev(
                f"s{i % 13}",
                "wa",
                i,
                1_790_000_000_000 + i,
                [f"t{i}"],
                kind="delete" if i % 97 == 0 else "snapshot",
            )
        )
        if i == 250:
            lines.append(b"a damaged line\n")
    # a second writer's file: its child numbers writers from 0, this view does not (remapped)
    other = [ev(f"s{i % 5}", "wb", i, 1_790_000_000_000 + 2 * i, [f"b{i}"]) for i in range(1, 200)]
    write_logs(root, {"wa": lines, "wb": other})
    sequential = Store(root, cache=False)
    expected = state(sequential)
    merged: list[int] = []
    real_merge = childfold.merge_range

    def merge(view, part, got, result):  # type: ignore[no-untyped-def]
        merged.append(len(got["columns"]["ts"]))
        return real_merge(view, part, got, result)

    monkeypatch.setattr(childfold, "merge_range", merge)
    monkeypatch.setattr(fold, "PARALLEL_FOLD_BYTES", 1)  # every fold: two halves
    monkeypatch.setattr(childfold, "can_fork", lambda: fork)
    import tempfile

    scratch = root.parent / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the child's rows go
    halves = Store(root, cache=False)
    assert state(halves) == expected
    assert len(merged) == 2 and min(merged) > 0  # a child really folded each second half
    assert list(scratch.iterdir()) == []  # its rows went through a file with no name
    assert_matches(halves, "alice")
    assert halves.problems("alice") == sequential.problems("alice")
