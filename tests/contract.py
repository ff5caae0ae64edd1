"""The Store contract: every configuration of the store must pass these (as eventsourcing's
shared persistence test suite does for its recorders). Subclass `StoreContract` and provide
`make_store`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from sessionmem import Conflict, InvalidInput, NotFound, Store
from sessionmem.codec import dumps


class StoreContract:
    """Run over every engine of `conftest.ENGINES` (the `engine_factory` fixture); a surface
    over an engine overrides `make_store` to wrap `self.factory(root)`."""

    factory: Callable[[Path], Any]

    def make_store(self, root: Path) -> Store:
        store: Store = self.factory(root)
        return store

    @pytest.fixture
    def s(self, tmp_path: Path, engine_factory: Callable[[Path], Any]) -> Store:
        self.factory = engine_factory
        return self.make_store(tmp_path / ".memory")

    def test_append_then_read_back_exactly(self, s: Store) -> None:
        body = {
            "session_id": "session-abc123",
            "project_path": "/Users/dev/myapp",
            "files_modified": ["app/main.py"],
            "commands_run": ["pytest -q"],
            "key_decisions": ["Switched to async endpoints for better throughput"],
            "open_tasks": ["Write tests for /api/v1/models/available"],
            "event": "pre_compact",
            "git_branch": "main",
            "git_commit": "abc123",
            "metadata": {"agent": "claude-code", "n": 3},
            "custom_field": {"kept": [1, 2]},
        }
        snap = s.append("alice", body)
        assert snap.session_id == "session-abc123"
        assert snap.version == 1
        assert snap.event == "pre_compact"
        expected = {k: v for k, v in body.items() if k != "session_id"}
        assert snap.session_data == expected
        assert s.latest("alice") == snap
        assert s.get("alice", "session-abc123") == snap
        assert s.get("alice", "session-abc123", version=1) == snap
        assert s.get("alice", "session-abc123", snapshot_id=snap.snapshot_id) == snap

    def test_defaults_are_filled(self, s: Store) -> None:
        snap = s.append("alice", {"session_id": "s"})
        assert snap.session_data == {
            "project_path": None,
            "files_modified": [],
            "commands_run": [],
            "key_decisions": [],
            "open_tasks": [],
            "event": "checkpoint",
        }

    def test_each_post_replaces_and_versions_count_up(self, s: Store) -> None:
        a = s.append("alice", {"session_id": "s", "open_tasks": ["a", "b"]})
        b = s.append("alice", {"session_id": "s", "key_decisions": ["d"]})
        assert (a.version, b.version) == (1, 2)
        assert a.snapshot_id != b.snapshot_id
        latest = s.get("alice", "s")
        assert latest.open_tasks == []
        assert latest.session_data["key_decisions"] == ["d"]
        assert s.get("alice", "s", version=1).open_tasks == ["a", "b"]

    def test_latest_spans_sessions_and_filters(self, s: Store) -> None:
        s.append("alice", {"session_id": "one", "project_path": "/p1", "git_branch": "main"})
        s.append(
            "alice",
            {
                "session_id": "two",
                "project_path": "/p2",
                "git_branch": "dev",
                "event": "session_end",
            },
        )
        assert s.latest("alice").session_id == "two"
        assert s.latest("alice", project_path="/p1").session_id == "one"
        assert s.latest("alice", git_branch="dev").session_id == "two"
        assert s.latest("alice", event="checkpoint").session_id == "one"
        with pytest.raises(NotFound):
            s.latest("alice", project_path="/nowhere")

    def test_users_are_isolated(self, s: Store) -> None:
        s.append("alice", {"session_id": "secret", "open_tasks": ["alice's task"]})
        with pytest.raises(NotFound):
            s.get("bob", "secret")
        with pytest.raises(NotFound):
            s.latest("bob")
        assert s.sessions("bob").items == []

    def test_unknown_session_is_not_found(self, s: Store) -> None:
        with pytest.raises(NotFound, match="No session 'nope'"):
            s.get("alice", "nope")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "session_id"),
            ({"session_id": ""}, "session_id"),
            ({"session_id": "a/b"}, "session_id"),
            ({"session_id": "x" * 129}, "session_id"),
            ({"session_id": "latest"}, "session_id"),
            ({"session_id": 5}, "session_id"),
            ({"session_id": "s", "open_tasks": "one"}, "open_tasks"),
            ({"session_id": "s", "open_tasks": [1]}, "open_tasks.0"),
            ({"session_id": "s", "event": "bogus"}, "event"),
            ({"session_id": "s", "project_path": 3}, "project_path"),
            ({"session_id": "s", "metadata": [1]}, "metadata"),
            ({"session_id": "s", "metadata": {"x": "y" * 70_000}}, "metadata"),
            ({"session_id": "s", "snapshot_id": "not-a-uuid"}, "snapshot_id"),
        ],
    )
    def test_invalid_bodies_name_the_field(self, s: Store, body: dict, field: str) -> None:
        with pytest.raises(InvalidInput) as err:
            s.append("alice", body)
        assert field in [e.field for e in err.value.errors]
        assert s.sessions("alice").items == []

    @pytest.mark.parametrize("user", ["", "../etc", "a/b", ".hidden", "x" * 129, "a b"])
    def test_invalid_users_are_refused(self, s: Store, user: str) -> None:
        with pytest.raises(InvalidInput, match="user"):
            s.append(user, {"session_id": "s"})

    def test_delete_hides_and_a_new_post_starts_over(self, s: Store) -> None:
        s.append("alice", {"session_id": "s", "open_tasks": ["a"]})
        s.append("alice", {"session_id": "s", "open_tasks": ["b"]})
        s.append("alice", {"session_id": "other"})
        assert s.delete("alice", "s") == 2
        with pytest.raises(NotFound):
            s.get("alice", "s")
        with pytest.raises(NotFound):
            s.history("alice", "s")
        assert [x.session_id for x in s.sessions("alice").items] == ["other"]
        assert s.latest("alice").session_id == "other"
        with pytest.raises(NotFound):
            s.delete("alice", "s")
        again = s.append("alice", {"session_id": "s", "open_tasks": ["c"]})
        assert again.version == 1
        assert s.history("alice", "s").items[0].version == 1

    def test_delete_of_foreign_or_unknown_session_is_not_found(self, s: Store) -> None:
        s.append("alice", {"session_id": "s"})
        with pytest.raises(NotFound):
            s.delete("bob", "s")
        with pytest.raises(NotFound):
            s.delete("alice", "nope")

    def test_idempotency_key_returns_first_result(self, s: Store) -> None:
        first = s.append("alice", {"session_id": "s", "open_tasks": ["a"]}, idempotency_key="k1")
        again = s.append("alice", {"session_id": "s", "open_tasks": ["a"]}, idempotency_key="k1")
        assert again == first
        assert s.history("alice", "s").items[0].version == 1
        with pytest.raises(Conflict, match="Idempotency-Key"):
            s.append("alice", {"session_id": "s", "open_tasks": ["b"]}, idempotency_key="k1")
        restarted = self.make_store(s.root)
        assert (
            restarted.append(
                "alice", {"session_id": "s", "open_tasks": ["a"]}, idempotency_key="k1"
            )
            == first
        )

    def test_client_chosen_snapshot_id_makes_retries_safe(self, s: Store) -> None:
        sid = "0193b7d2-0000-7000-8000-000000000001"
        first = s.append("alice", {"session_id": "s", "snapshot_id": sid, "open_tasks": ["a"]})
        assert first.snapshot_id == sid
        again = s.append("alice", {"session_id": "s", "snapshot_id": sid, "open_tasks": ["a"]})
        assert again == first
        with pytest.raises(Conflict):
            s.append("alice", {"session_id": "s", "snapshot_id": sid, "open_tasks": ["z"]})

    def test_lines_are_canonical(self, s: Store) -> None:
        s.append("alice", {"session_id": "s", "open_tasks": ["ü"], "zeta": 1, "alpha": 2})
        raw, writer = stored_lines(getattr(s, "engine", s), "alice")
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1
        record = orjson.loads(raw)
        assert raw == dumps(record) + b"\n"
        assert set(record) == {
            "v",
            "id",
            "type",
            "user",
            "session_id",
            "writer",
            "seq",
            "ts",
            "data",
        }
        assert record["seq"] >= 1 and record["writer"] == writer
        assert len(record["ts"]) == 24 and record["ts"].endswith("Z")

    def test_two_stores_on_one_root_see_each_other(self, s: Store) -> None:
        other = self.make_store(s.root)
        s.append("alice", {"session_id": "s", "open_tasks": ["a"]})
        assert other.get("alice", "s").open_tasks == ["a"]
        other.append("alice", {"session_id": "s", "open_tasks": ["b"]})
        assert s.get("alice", "s").version == 2
        assert s.latest("alice").open_tasks == ["b"]


def stored_lines(engine: Any, user: str) -> tuple[bytes, str]:
    """Every stored line of `user` and the writer that wrote them, from the engine's own place
    (the log files, or the database's `events`)."""
    if isinstance(engine, Store):
        (path,) = (engine.root / "log" / user).glob("*.jsonl")
        return path.read_bytes(), path.stem
    import psycopg

    with psycopg.connect(engine.url) as conn:
        rows = conn.execute("SELECT line FROM events WHERE user_id = %s ORDER BY pos",
                            (user,)).fetchall()  # fmt: skip
    return b"".join(bytes(r[0]) for r in rows), "postgres"
