"""History, replay, diffs, listings and tombstones over real stores (issue 3)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionmem import NotFound, Store
from sessionmem.diff import list_changes
from sessionmem.keys import KeyRing
from sessionmem.layout import Layout

FIELDS = ("files_modified", "commands_run", "key_decisions", "open_tasks")


def random_body(rng: random.Random, i: int) -> dict:
    pool = [f"item-{n}" for n in range(12)]
    return {
        "session_id": "long",
        **{f: rng.sample(pool, rng.randint(0, 6)) for f in FIELDS},
        "event": rng.choice(["pre_compact", "session_end", "checkpoint"]),
        "git_branch": rng.choice(["main", "dev", None]),
        "n": i,
    }


@pytest.fixture(scope="module")
def fifty(tmp_path_factory) -> tuple[Store, list[dict]]:
    store = Store(tmp_path_factory.mktemp("h") / ".memory", durability="fast")
    rng = random.Random(50)
    bodies = [random_body(rng, i) for i in range(50)]
    for b in bodies:
        store.append("alice", b)
    return store, bodies


@pytest.mark.parametrize("limit", [1, 7, 10, 49, 50, 1000])
def test_history_pages_join_up(fifty, limit: int) -> None:
    store, _ = fifty
    seen, cursor = [], None
    while True:
        page = store.history("alice", "long", limit=limit, cursor=cursor)
        seen += [e.version for e in page.items]
        assert len(page.items) <= limit
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(range(50, 0, -1))


def test_every_version_replays_exactly(fifty) -> None:
    store, bodies = fifty
    history = {e.version: e for e in store.history("alice", "long", limit=50).items}
    for n, body in enumerate(bodies, start=1):
        snap = store.get("alice", "long", version=n)
        assert snap.version == n
        assert snap.session_data == {k: v for k, v in body.items() if k != "session_id"} | (
            {"project_path": None}
        )
        assert store.get("alice", "long", snapshot_id=snap.snapshot_id) == snap
        entry = history[n]
        assert entry.snapshot_id == snap.snapshot_id
        assert entry.counts == {f: len(body[f]) for f in FIELDS}
        assert entry.event == body["event"]
    with pytest.raises(NotFound, match="versions 1 to 50"):
        store.get("alice", "long", version=51)


def test_diffs_between_any_two_versions(fifty) -> None:
    store, bodies = fifty
    rng = random.Random(3)
    for _ in range(60):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        d = store.diff("alice", "long", a, b)
        old, new = bodies[a - 1], bodies[b - 1]
        assert (d.from_version, d.to_version) == (a, b)
        for f in FIELDS:
            assert set(old[f]) - set(d.removed[f]) | set(d.added[f]) == set(new[f])
            assert d.added[f] == [x for x in new[f] if x not in old[f]]
        for scalar in ("event", "git_branch", "n"):
            if old[scalar] != new[scalar]:
                assert d.changed[scalar] == {"from": old[scalar], "to": new[scalar]}
            else:
                assert scalar not in d.changed
    default = store.diff("alice", "long")
    assert (default.from_version, default.to_version) == (49, 50)
    by_id = store.diff("alice", "long", store.get("alice", "long", version=3).snapshot_id, "5")
    assert (by_id.from_version, by_id.to_version) == (3, 5)


@settings(max_examples=200, deadline=None)
@given(old=st.lists(st.sampled_from("abcdef")), new=st.lists(st.sampled_from("abcdef")))
def test_diff_applied_to_the_older_list_gives_the_newer(old: list[str], new: list[str]) -> None:
    added, removed = list_changes(old, new)
    rest = list(old)
    for x in removed:
        rest.remove(x)
    assert sorted(rest + added) == sorted(new)
    # an item that only moved is neither added nor removed
    assert list_changes(old, list(reversed(old))) == ([], [])


def test_sessions_listing_filters_and_pages(tmp_path: Path) -> None:
    store = Store(tmp_path / ".memory", durability="fast")
    for i in range(25):
        store.append(
            "alice",
            {
                "session_id": f"s{i:02d}",
                "project_path": f"/p{i % 3}",
                "git_branch": "main" if i % 2 else "dev",
                "event": "session_end" if i % 5 == 0 else "checkpoint",
            },
        )
    store.append("alice", {"session_id": "s03", "project_path": "/p0", "git_branch": "main"})
    ids, cursor = [], None
    while True:
        page = store.sessions("alice", limit=4, cursor=cursor)
        ids += [s.session_id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert ids[0] == "s03" and len(ids) == 25 and len(set(ids)) == 25
    assert ids[1:] == [f"s{i:02d}" for i in range(24, -1, -1) if i != 3]
    p1 = [s.session_id for s in store.sessions("alice", project_path="/p1").items]
    assert p1 == [f"s{i:02d}" for i in range(24, -1, -1) if i % 3 == 1]
    ends = [s.session_id for s in store.sessions("alice", event="session_end").items]
    assert ends == ["s20", "s15", "s10", "s05", "s00"]
    assert store.latest("alice", git_branch="dev").session_id == "s24"
    assert store.latest("alice", project_path="/p0", git_branch="main").session_id == "s03"
    assert store.sessions("alice").items[0].version == 2


def test_tombstone_hides_everything_and_survives_restart(tmp_path: Path) -> None:
    root = tmp_path / ".memory"
    store = Store(root)
    for i in range(3):
        store.append("alice", {"session_id": "gone", "open_tasks": [f"t{i}"]})
    store.append("alice", {"session_id": "kept"})
    store.delete("alice", "gone")
    fresh = Store(root)
    for s in (store, fresh):
        with pytest.raises(NotFound):
            s.get("alice", "gone")
        with pytest.raises(NotFound):
            s.get("alice", "gone", version=1)
        with pytest.raises(NotFound):
            s.history("alice", "gone")
        with pytest.raises(NotFound):
            s.diff("alice", "gone")
        assert [x.session_id for x in s.sessions("alice").items] == ["kept"]
        assert s.latest("alice").session_id == "kept"
    # the events are all still in the log: deleting is a tombstone, not an erasure
    (log,) = (root / "log" / "alice").glob("*.jsonl")
    assert log.read_text().count('"session_id":"gone"') == 4


def test_idempotent_retry_across_a_server_restart(tmp_path: Path, serve) -> None:
    root = tmp_path / ".memory"
    key = KeyRing(Layout(root)).create("alice")[1]
    body = {"session_id": "s", "open_tasks": ["a"]}
    headers = {"x-api-key": key, "Idempotency-Key": "req-42"}
    path = "/api/v1/public/memory/v2/session"
    server = serve(root)
    first = httpx.post(server.base + path, json=body, headers=headers)
    assert first.status_code == 201
    server.stop()
    server = serve(root)
    again = httpx.post(server.base + path, json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    other = httpx.post(server.base + path, json={**body, "open_tasks": ["b"]}, headers=headers)
    assert other.status_code == 409
    hist = httpx.get(server.base + path + "/s/history", headers={"x-api-key": key}).json()
    assert [e["version"] for e in hist["items"]] == [1]


def _listing(store: Store, session: str) -> list[tuple]:
    items = store.history("alice", session, limit=1000).items
    return [(e.version, e.snapshot_id, e.event, e.created_at, e.counts) for e in items]


def test_kept_history_entries_follow_every_change(tmp_path: Path) -> None:
    """Listings are kept between calls (issue 6); each kind of change must show in the next one,
    exactly as a store that never listed before sees it."""
    from sessionmem.codec import Event, encode, uuid7
    from sessionmem.log import touch_folder

    root = tmp_path / ".memory"
    store = Store(root, durability="fast")
    first = []
    for i in range(3):
        first.append(store.append("alice", {"session_id": "s", "open_tasks": [f"t{i}"]}))
        time.sleep(0.005)  # distinct milliseconds, so the merged event below sorts in between

    def same_as_fresh() -> list[tuple]:
        seen = _listing(store, "s")
        assert seen == _listing(Store(root, cache=False), "s")
        return seen

    assert [v for v, *_ in same_as_fresh()] == [3, 2, 1]
    # another clone's event, older than our second one, arrives by a merge: it sorts in between
    folder = root / "log" / "alice"
    other = Event(
        id=uuid7(1),
        type="snapshot",
        user="alice",
        session_id="s",
        writer="zz-other-clone",
        seq=1,
        ts=first[0].created_at,  # same ms as version 1, a writer that sorts after ours
        data={
            "open_tasks": ["from the merge"],
            "files_modified": [],
            "commands_run": [],
            "key_decisions": [],
            "project_path": None,
            "event": "merged",
        },
    )
    (folder / "zz-other-clone.jsonl").write_bytes(encode(other))
    touch_folder(str(folder))
    listed = same_as_fresh()
    assert [(v, i) for v, i, *_ in listed] == [
        (4, first[2].snapshot_id),
        (3, first[1].snapshot_id),
        (2, other.id),
        (1, first[0].snapshot_id),
    ]
    # a new version appends one entry; a delete hides all; a new post restarts at 1
    store.append("alice", {"session_id": "s", "open_tasks": ["four"]})
    assert [v for v, *_ in same_as_fresh()] == [5, 4, 3, 2, 1]
    store.delete("alice", "s")
    with pytest.raises(NotFound):
        store.history("alice", "s")
    again = store.append("alice", {"session_id": "s", "open_tasks": ["again"]})
    assert [(v, i) for v, i, *_ in same_as_fresh()] == [(1, again.snapshot_id)]
    # git replaces our log with an older version of it: the listing follows
    ours = next(p for p in folder.glob("*.jsonl") if p.name != "zz-other-clone.jsonl")
    lines = ours.read_bytes().splitlines(keepends=True)
    replacement = folder / "incoming.tmp"
    replacement.write_bytes(b"".join(lines[:2]))
    os.replace(replacement, ours)
    touch_folder(str(folder))
    assert [(v, i) for v, i, *_ in same_as_fresh()] == [
        (3, first[1].snapshot_id),
        (2, other.id),
        (1, first[0].snapshot_id),
    ]
