"""Whatever git does to the logs, the projection is the fold of the distinct events present
(issue 4). Real `git` in temporary repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionmem import Store

from helpers import commit_all, git, new_repo
from oracle import assert_matches


def save(repo: Path, session: str, *tasks: str) -> None:
    Store(repo / ".memory", durability="fast").append(
        "alice", {"session_id": session, "open_tasks": list(tasks)}
    )


def clone(src: Path, dst: Path) -> Path:
    git(src.parent, "clone", "-q", str(src), str(dst))
    return dst


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return new_repo(tmp_path / "origin")


def test_init_writes_the_gitattributes_that_git_uses(origin: Path) -> None:
    out = git(origin, "check-attr", "merge", "eol", "--", ".memory/log/alice/w.jsonl")
    assert "merge: union" in out and "eol: lf" in out
    git(origin, "check-ignore", ".memory/.local/writer.json")


def test_two_clones_append_then_merge(origin: Path, tmp_path: Path) -> None:
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(tmp_path / "hub.git"))
    a = clone(tmp_path / "hub.git", tmp_path / "a")
    b = clone(tmp_path / "hub.git", tmp_path / "b")
    save(a, "s1", "a1")
    save(b, "s1", "b1")
    save(a, "s2", "a2")
    save(b, "s3", "b2")
    commit_all(a, "a work")
    commit_all(b, "b work")
    git(a, "push", "-q", "origin", "main")
    git(b, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")
    git(b, "push", "-q", "origin", "main")
    git(a, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")
    sa, sb = Store(a / ".memory"), Store(b / ".memory")
    expected = assert_matches(sa, "alice")
    assert assert_matches(sb, "alice") == expected
    assert len(expected["s1"]) == 2
    assert sa.latest("alice") == sb.latest("alice")
    for session in expected:
        assert sa.history("alice", session) == sb.history("alice", session)
    assert len(list((a / ".memory" / "log" / "alice").glob("*.jsonl"))) == 2


def test_one_clone_two_branches_union_merge(origin: Path) -> None:
    save(origin, "s", "base")
    commit_all(origin, "base")
    git(origin, "checkout", "-q", "-b", "feature")
    save(origin, "s", "on feature")
    save(origin, "f", "feature only")
    commit_all(origin, "feature work")
    git(origin, "checkout", "-q", "main")
    save(origin, "s", "on main")
    commit_all(origin, "main work")
    git(origin, "merge", "-q", "--no-edit", "feature")  # same file on both sides: union
    store = Store(origin / ".memory")
    expected = assert_matches(store, "alice")
    assert len(expected["s"]) == 3
    assert store.get("alice", "f").open_tasks == ["feature only"]
    seqs = []
    for line in (
        (origin / ".memory" / "log" / "alice").glob("*.jsonl").__next__().read_bytes().splitlines()
    ):
        seqs.append(__import__("orjson").loads(line)["seq"])
    assert sorted(seqs) == list(range(1, 5)), "a writer never reuses a seq across branches"
    save(origin, "s", "after merge")
    assert_matches(Store(origin / ".memory"), "alice")


def test_cherry_pick_and_rebase_duplicates_count_once(origin: Path) -> None:
    save(origin, "s", "base")
    commit_all(origin, "base")
    git(origin, "checkout", "-q", "-b", "topic")
    save(origin, "s", "t1")
    commit_all(origin, "t1")
    pick = git(origin, "rev-parse", "HEAD").strip()
    save(origin, "s", "t2")
    commit_all(origin, "t2")
    git(origin, "checkout", "-q", "main")
    save(origin, "s", "m1")
    commit_all(origin, "m1")
    git(origin, "cherry-pick", pick)  # t1 now on main too
    git(origin, "checkout", "-q", "topic")
    git(origin, "rebase", "-q", "main")  # replays t2 (t1 is already there) with union merges
    git(origin, "checkout", "-q", "main")
    git(origin, "merge", "-q", "--no-edit", "topic")
    store = Store(origin / ".memory")
    expected = assert_matches(store, "alice")
    assert [
        store.get("alice", "s", version=v).open_tasks[0] for v in range(1, len(expected["s"]) + 1)
    ] == ["base", "t1", "t2", "m1"]


def test_duplicated_lines_from_a_sloppy_merge_count_once(origin: Path) -> None:
    save(origin, "s", "one")
    save(origin, "s", "two")
    (path,) = (origin / ".memory" / "log" / "alice").glob("*.jsonl")
    raw = path.read_bytes()
    path.write_bytes(raw + raw)  # every line twice
    store = Store(origin / ".memory")
    assert [e.version for e in store.history("alice", "s").items] == [2, 1]
    assert_matches(store, "alice")


def test_revert_removes_what_the_commit_added(origin: Path) -> None:
    save(origin, "s", "kept")
    commit_all(origin, "kept")
    save(origin, "s", "reverted")
    save(origin, "r", "reverted too")
    commit_all(origin, "to revert")
    store = Store(origin / ".memory")
    assert store.get("alice", "s").version == 2
    git(origin, "revert", "--no-edit", "HEAD")
    assert store.get("alice", "s").open_tasks == ["kept"]
    assert [s.session_id for s in store.sessions("alice").items] == ["s"]
    assert_matches(store, "alice")


def test_checkout_of_an_older_commit_and_back(origin: Path) -> None:
    save(origin, "s", "v1")
    commit_all(origin, "v1")
    old = git(origin, "rev-parse", "HEAD").strip()
    for i in range(2, 5):
        save(origin, "s", f"v{i}")
    commit_all(origin, "more")
    store = Store(origin / ".memory")
    assert store.get("alice", "s").version == 4
    git(origin, "checkout", "-q", old)
    assert store.get("alice", "s").version == 1
    assert_matches(store, "alice")
    git(origin, "checkout", "-q", "main")
    assert store.get("alice", "s").version == 4
    assert_matches(store, "alice")


def test_a_second_clone_pulling_sees_the_same(origin: Path, tmp_path: Path) -> None:
    for i in range(5):
        save(origin, f"s{i % 2}", f"t{i}")
    commit_all(origin, "work")
    other = clone(origin, tmp_path / "other")
    s1, s2 = Store(origin / ".memory"), Store(other / ".memory")
    assert s1.latest("alice") == s2.latest("alice")
    for sid in ("s0", "s1"):
        assert s1.history("alice", sid) == s2.history("alice", sid)
    save(origin, "s0", "new")
    commit_all(origin, "new")
    git(other, "pull", "-q", "--no-rebase", "origin", "main")
    assert s2.latest("alice").open_tasks == ["new"]
    assert s1.latest("alice") == s2.latest("alice")
    assert s1.writer != s2.writer
