"""Bytes that arrive in `.memory/` through git, an editor or another clone (docs/storage.md):
a merge that reuses an inode, an out-of-range seq, a clock from the future, a BOM, links, ids
shared between users. Each is checked through a real server restarted with and without the
projection cache, against the oracle."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest

from sessionmem import Store
from sessionmem.cache import cache_path
from sessionmem.codec import BOM, ms_to_ts, now_ms
from sessionmem.keys import KeyRing
from sessionmem.layout import Layout
from sessionmem.verify import verify

from conftest import sessionmem_cmd, url
from helpers import commit_all, git, new_repo, state
from oracle import assert_matches, reference

USER = "alice"


def _read_all(base: str, key: str) -> tuple[dict[str, list[str]], str | None]:
    """What a client can read: each session's history (oldest first) and the latest session."""
    h = {"x-api-key": key}
    listing = httpx.get(base + url("/sessions"), params={"limit": 1000}, headers=h, timeout=10)
    assert listing.status_code == 200, listing.text
    out = {}
    for item in listing.json()["items"]:
        sid = item["session_id"]
        got = httpx.get(base + url(f"/session/{sid}"), headers=h, timeout=10)
        assert got.status_code == 200, got.text
        hist = httpx.get(
            base + url(f"/session/{sid}/history"), params={"limit": 1000}, headers=h, timeout=10
        )
        assert hist.status_code == 200, hist.text
        out[sid] = [e["snapshot_id"] for e in reversed(hist.json()["items"])]
    latest = httpx.get(base + url("/session/latest"), headers=h, timeout=10)
    assert latest.status_code in (200, 404), latest.text
    return out, latest.json()["session_id"] if latest.status_code == 200 else None


def after_restarts(root: Path, serve, key: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Start a real server with the cache (twice: the first stop writes it) and one without;
    every answer must equal the oracle's."""
    expected = reference(root, USER)
    for env in ({}, {}, {"SESSIONMEM_CACHE": "0"}):
        server = serve(root, env=env)
        try:
            got, _ = _read_all(server.base, key)
        finally:
            server.stop()
        assert got == expected, f"after a restart with {env or 'the cache'}"
    assert_matches(Store(root, cache=False), USER)
    return expected


def _key(root: Path) -> str:
    return KeyRing(Layout(root)).create(USER)[1]


# --- 1. a merge that git writes into a reused inode, lines of equal length ---


def test_a_merge_into_a_reused_inode_is_read_again(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    repo = new_repo(tmp_path / "repo")
    mem = repo / ".memory"

    def save(*sessions: str) -> None:
        store = Store(mem, durability="fast")
        for sid in sessions:  # equal-length lines: same-length ids and tasks, one-digit seqs
            store.append(USER, {"session_id": sid, "open_tasks": ["task"]})
        store.close()  # writes the projection cache, as a server does when it stops

    save("s00")
    commit_all(repo, "base")
    git(repo, "checkout", "-q", "-b", "a")
    save("sa1", "sa2")
    commit_all(repo, "a")
    git(repo, "checkout", "-q", "-b", "b", "main")
    cache_path(mem, USER).unlink()  # (a server started on b folds cold, then caches b)
    save("sb1", "sb2")
    commit_all(repo, "b")
    (log,) = (mem / "log" / USER).glob("*.jsonl")
    keep = tmp_path / "inode-of-b"
    os.link(log, keep)  # keep branch b's inode, the one the cache describes, alive
    cached_ino = log.stat().st_ino
    git(repo, "checkout", "-q", "a")
    git(repo, "merge", "-q", "-m", "merge b", "b")
    merged = log.read_bytes()
    assert merged.count(b"\n") == 5 and len({len(x) for x in merged.splitlines()}) == 1
    # As when the filesystem hands the freed inode number back: same inode, grown file.
    with open(keep, "r+b") as f:
        f.write(merged)
        f.truncate()
    os.replace(keep, log)
    assert log.stat().st_ino == cached_ino and cache_path(mem, USER).exists()

    expected = after_restarts(mem, serve, _key(mem))
    assert sorted(expected) == ["s00", "sa1", "sa2", "sb1", "sb2"]


# --- 2. one out-of-range seq ---


def _line(writer: str, seq: int | str, ts: str, sid: str = "merged", user: str = USER) -> bytes:
    ms = now_ms()
    record = {
        "v": 1,
        "id": f"01a2{ms % 10**8:08x}"[:8] + "-0000-7000-8000-" + f"{seq!s:0>12}"[-12:],
        "type": "snapshot",
        "user": user,
        "session_id": sid,
        "writer": writer,
        "seq": 1,
        "ts": ts,
        "data": {"open_tasks": ["from another clone"], "event": "checkpoint"},
    }
    raw = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return raw.replace(b'"seq":1', b'"seq":' + str(seq).encode()) + b"\n"


def test_an_out_of_range_seq_is_skipped_and_reported(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / ".memory"
    key = _key(root)
    Store(root).append(USER, {"session_id": "mine", "open_tasks": ["a"]})
    other = root / "log" / USER / "other-clone.jsonl"
    other.write_bytes(_line("other-clone", 9223372036854775808, ms_to_ts(now_ms())))
    server = serve(root)
    try:
        h = {"x-api-key": key}
        posted = httpx.post(server.base + url("/session"), json={"session_id": "new"}, headers=h)
        assert posted.status_code == 201, posted.text
        assert httpx.get(server.base + url("/session/mine"), headers=h).status_code == 200
        assert httpx.get(server.base + url("/session/new"), headers=h).status_code == 200
    finally:
        server.stop()
    assert after_restarts(root, serve, key).keys() == {"mine", "new"}
    cli = [*sessionmem_cmd(), "verify", "--root", str(root)]
    out = subprocess.run(cli, capture_output=True, text=True)
    assert out.returncode == 1 and "seq is not an integer" in out.stdout, out.stdout
    repaired = subprocess.run([*cli, "--repair"], capture_output=True, text=True)
    assert repaired.returncode == 0, repaired.stdout
    assert not verify(root).findings and other.read_bytes() == b""


# --- 3. a clock from the future ---


@pytest.mark.parametrize("year", ["9999-12-31T23:59:59.999Z", "2099-06-01T00:00:00.000Z"])
def test_a_future_clock_never_drags_ours(tmp_path: Path, serve, year: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / ".memory"
    key = _key(root)
    Store(root).append(USER, {"session_id": "mine"})
    other = root / "log" / USER / "wrong-clock.jsonl"
    other.write_bytes(_line("wrong-clock", 1, year, sid="future"))
    server = serve(root)
    try:
        h = {"x-api-key": key}
        for i in range(3):
            posted = httpx.post(
                server.base + url("/session"), json={"session_id": f"n{i}"}, headers=h
            )
            assert posted.status_code == 201, posted.text
            assert posted.json()["created_at"] < "2098", "stamped in the other clone's future"
        future = httpx.get(server.base + url("/session/future"), headers=h)
        assert future.status_code == 200 and future.json()["created_at"] == year
        # ordered by its ts: it is the latest
        assert httpx.get(server.base + url("/session/latest"), headers=h).json()["session_id"] == (
            "future"
        )
    finally:
        server.stop()
    report = verify(root)
    assert not report.damaged
    assert [f.kind for f in report.findings if f.level == "warning"] == ["future-ts"]
    other.unlink()  # the revert; the cache written at the stop remembered that ts
    after = Store(root).append(USER, {"session_id": "after-revert"})
    assert after.created_at < "2098"
    after_restarts(root, serve, key)


# --- 4. a BOM and CRLF line ends ---


def test_a_bom_and_crlf_are_read_and_repaired_without_loss(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / ".memory"
    key = _key(root)
    store = Store(root)
    for i in range(3):
        store.append(USER, {"session_id": f"s{i}", "open_tasks": [f"t{i}"]})
    (log,) = (root / "log" / USER).glob("*.jsonl")
    raw = log.read_bytes()
    log.write_bytes(BOM + raw.replace(b"\n", b"\r\n"))  # an editor saving "with BOM", CRLF
    expected = after_restarts(root, serve, key)
    assert sorted(expected) == ["s0", "s1", "s2"]
    report = verify(root)
    assert not report.damaged and {f.kind for f in report.findings} == {"bom", "crlf"}
    out = subprocess.run(
        [*sessionmem_cmd(), "verify", "--root", str(root), "--repair"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "every event kept" in out.stdout, out.stdout
    assert log.read_bytes() == raw  # byte for byte, minus the BOM and the CRs
    assert not (root / ".local" / "quarantine").exists() or not any(
        (root / ".local" / "quarantine").iterdir()
    )
    assert after_restarts(root, serve, key) == expected


# --- 5. links ---


def test_nothing_is_written_through_links(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / ".memory"
    ring = KeyRing(Layout(root))
    alice, mallory = ring.create(USER)[1], ring.create("mallory")[1]
    Store(root).append(USER, {"session_id": "mine", "open_tasks": ["a"]})
    (own,) = (root / "log" / USER).glob("*.jsonl")
    before = own.read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "log" / "mallory").symlink_to(root / "log" / USER)  # mallory's folder is alice's
    (root / "log" / "carol").symlink_to(outside)  # carol's folder is outside the memory folder
    carol = ring.create("carol")[1]
    server = serve(root)
    try:
        for key in (mallory, carol):
            posted = httpx.post(
                server.base + url("/session"), json={"session_id": "x"}, headers={"x-api-key": key}
            )
            assert posted.status_code == 503 and "link" in posted.json()["detail"], posted.text
        assert own.read_bytes() == before and list(outside.iterdir()) == []
        # alice's own log file replaced by a link: refused, nothing written anywhere
        target = outside / "elsewhere.jsonl"
        target.write_bytes(before)
        own.unlink()
        own.symlink_to(target)
        posted = httpx.post(
            server.base + url("/session"), json={"session_id": "y"}, headers={"x-api-key": alice}
        )
        assert posted.status_code == 503, posted.text
        assert target.read_bytes() == before
        # and a linked file is not read
        got = httpx.get(server.base + url("/session/mine"), headers={"x-api-key": alice})
        assert got.status_code == 404
    finally:
        server.stop()
    kinds = {(f.kind, f.path) for f in verify(root).findings}
    assert ("outside-layout", "log/mallory") in kinds and ("outside-layout", "log/carol") in kinds
    assert ("outside-layout", f"log/{USER}/{own.name}") in kinds
    assert verify(root, repair=True).unresolved  # says what a person should do
    assert after_restarts(root, serve, alice) == {}  # the linked file is read by nobody


# --- 6. verify is scoped as the store is ---


def test_verify_scopes_ids_per_user_and_repair_resolves_its_errors(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / ".memory"
    key = _key(root)
    store = Store(root)
    shared = "01a2fe00-0000-7000-8000-000000000001"
    for user in (USER, "bob"):
        store.append(user, {"session_id": "s", "snapshot_id": shared, "open_tasks": [user]})
    assert verify(root).findings == [], "one id used by two users is not damage"
    # the same id with other content in another writer's file (a hand edit, a bad merge)
    (own,) = (root / "log" / USER).glob("*.jsonl")
    forged = own.read_bytes().replace(b'"open_tasks":["alice"]', b'"open_tasks":["forged"]')
    (root / "log" / USER / "aaa-other.jsonl").write_bytes(forged)
    report = verify(root)
    (error,) = [f for f in report.findings if f.level == "error"]
    assert error.kind == "conflicting-duplicate" and error.path.endswith("aaa-other.jsonl")
    assert verify(root, repair=True).moved
    assert not verify(root).damaged
    assert Store(root).get(USER, "s").open_tasks == ["alice"]
    assert own.read_bytes().count(b"\n") == 1
    assert after_restarts(root, serve, key) == {"s": [shared]}


# --- the cache matrix ---


def _filled(root: Path) -> Path:
    store = Store(root, durability="fast")
    for i in range(12):
        store.append(USER, {"session_id": f"s{i % 4}", "open_tasks": [f"task-{i:02d}"]})
    store.close()
    (log,) = (root / "log" / USER).glob("*.jsonl")
    return log


def _rewrite_in_place(log: Path) -> None:
    raw = log.read_bytes()
    with open(log, "r+b") as f:  # same inode, same length, an older line changed
        f.write(raw.replace(b"task-01", b"task-99", 1))


def _regrow(log: Path) -> None:
    """Truncated to half, then regrown past its old size by the same writer, lines of equal
    length: the old fold offset now falls on a line boundary inside new lines."""
    lines = log.read_bytes().splitlines(keepends=True)
    with open(log, "r+b") as f:
        f.truncate(len(b"".join(lines[:6])))
    again = Store(log.parent.parent.parent, durability="fast", cache=False)
    for i in range(8):
        again.append(USER, {"session_id": f"s{i % 4}", "open_tasks": [f"task-{20 + i:02d}"]})


def _git_like(log: Path) -> None:
    """A different file of equal length put into the same inode (a rewrite that reuses it)."""
    raw = log.read_bytes()
    lines = raw.splitlines(keepends=True)
    swapped = b"".join([lines[1], lines[0], *lines[2:]])
    assert len(swapped) == len(raw)
    with open(log, "r+b") as f:
        f.write(swapped)


@pytest.mark.parametrize("change", [_rewrite_in_place, _regrow, _git_like])
def test_every_change_to_a_cached_file_is_seen(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / ".memory"
    log = _filled(root)
    running = Store(root, durability="fast")
    running.sessions(USER)
    ino = log.stat().st_ino
    change(log)
    assert log.stat().st_ino == ino
    fresh = content(Store(root, cache=False))
    assert content(Store(root)) == fresh, "warm start from the cache"
    running._views.get(USER).state.full_at = 0  # the watcher's nudge for an edit in place
    assert content(running) == fresh, "a running store"
    assert_matches(Store(root), USER)


def test_a_grown_file_with_an_edited_prefix_is_caught_by_the_cache_check(tmp_path: Path) -> None:
    """The edit keeps the last folded line where it was and appends: only the CRC of every
    folded byte can tell — the cache checks it on load."""
    root = tmp_path / ".memory"
    log = _filled(root)
    raw = log.read_bytes()
    extra = Store(tmp_path / "x" / ".memory", durability="fast")
    extra.append(USER, {"session_id": "later"})
    (new,) = (extra.root / "log" / USER).glob("*.jsonl")
    log.write_bytes(raw.replace(b"task-01", b"task-77", 1) + new.read_bytes())
    assert content(Store(root)) == content(Store(root, cache=False))


def content(store: Store) -> dict:
    """Every version of every session, whole — what a client can read."""
    out = {"state": state(store)}
    for s in store.sessions(USER, limit=1000).items:
        out[s.session_id] = [
            store.get(USER, s.session_id, version=v).view() for v in range(1, s.version + 1)
        ]
    return out
