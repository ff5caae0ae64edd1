"""`sessionmem verify` on hand-damaged logs, and `--repair` losing nothing (issue 4)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from sessionmem import Store
from sessionmem.verify import verify

from conftest import run_cli


@pytest.fixture
def logfile(root: Path) -> Path:
    store = Store(root)
    for i in range(4):
        store.append("alice", {"session_id": "s", "open_tasks": [f"t{i}"]})
    (path,) = (root / "log" / "alice").glob("*.jsonl")
    return path


def kinds(root: Path) -> dict[str, str]:
    return {f.kind: f.level for f in verify(root).findings}


def test_clean_log_is_clean(root: Path, logfile: Path) -> None:
    report = verify(root)
    assert report.findings == [] and report.files == 1 and report.events == 4
    code, out, _ = run_cli("verify", "--root", str(root))
    assert code == 0
    assert out.endswith("1 file, 4 events, 0 errors, 0 warnings: clean\n")


def test_each_kind_of_damage_is_found(root: Path, logfile: Path) -> None:
    lines = logfile.read_bytes().splitlines(keepends=True)
    first = orjson.loads(lines[0])
    conflicting = (
        orjson.dumps(
            {**first, "data": {**first["data"], "open_tasks": ["forged"]}},
            option=orjson.OPT_SORT_KEYS,
        )
        + b"\n"
    )
    gap = (
        orjson.dumps(
            {
                **orjson.loads(lines[3]),
                "id": "01a21486-c596-71fd-a564-000000000001",
                "seq": 9,
                "ts": "2020-01-01T00:00:00.000Z",
            },
            option=orjson.OPT_SORT_KEYS,
        )
        + b"\n"
    )
    wrong_user = lines[1].replace(b'"user":"alice"', b'"user":"bob"')
    logfile.write_bytes(
        b"".join(lines) + lines[2] + b"garbage\n" + conflicting + gap + wrong_user + b'{"torn'
    )
    (root / "log" / "stray.txt").write_text("x")
    (root / "log" / "alice" / "notes.md").write_text("x")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    found = kinds(root)
    assert found == {
        "torn-tail": "error",
        "bad-line": "error",
        "conflicting-duplicate": "error",
        "duplicate": "info",
        "seq-gap": "warning",
        "ts-order": "warning",
        "wrong-user": "error",
        "outside-layout": "error",
    }
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before, "verify without --repair changes nothing"
    code, out, _ = run_cli("verify", "--root", str(root), "--json")
    assert code == 1
    assert json.loads(out)["clean"] is False


def test_repair_sets_aside_and_loses_nothing(root: Path, logfile: Path) -> None:
    lines = logfile.read_bytes().splitlines(keepends=True)
    damaged = (
        lines[0]
        + b"not json at all\n"
        + b"".join(lines[1:3])
        + b'{"v":1}\n'
        + lines[3]
        + b'{"partial'
    )
    logfile.write_bytes(damaged)
    before = [Store(root).get("alice", "s", version=v) for v in range(1, 5)]
    code, out, _ = run_cli("verify", "--root", str(root), "--repair")
    assert code == 0, out
    assert "set aside 3 bad pieces" in out
    assert verify(root).findings == []
    (quarantine,) = (root / ".local" / "quarantine").glob("*.bad.jsonl")
    pieces = [orjson.loads(line)["bytes"].encode() for line in quarantine.read_bytes().splitlines()]
    assert pieces == [b"not json at all\n", b'{"v":1}\n', b'{"partial']
    assert logfile.read_bytes() == b"".join(lines)  # exactly the good lines, in their order
    store = Store(root)
    assert [store.get("alice", "s", version=v) for v in range(1, 5)] == before
    store.append("alice", {"session_id": "s", "open_tasks": ["after repair"]})
    assert verify(root).findings == []
