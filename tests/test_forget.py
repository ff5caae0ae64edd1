"""Forget, forget --text and prune (docs/decisions.md, "Forgetting"; docs/storage.md,
"Erasure"): what is forgotten leaves every file under .memory/, stays gone across git merges,
and nothing else is lost on the way — with real git, real processes and SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionmem import Client, InvalidInput, NotFound, Store
from sessionmem.erase import parse, text_hash
from sessionmem.verify import verify

from conftest import Server, run_cli, sessionmem_cmd
from helpers import commit_all, git, new_repo

SECRET = "sk-proj-Zq8W3nT5vB1xK9mR4pL7cY2fH6jD0sA"


def _all_bytes(root: Path, *, skip: tuple[str, ...] = ("erased",)) -> bytes:
    """Every byte of every file under a memory folder (erase records aside when asked)."""
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).parts
        if path.is_file() and not path.is_symlink() and rel[0] not in skip:
            out.append(path.read_bytes())
    return b"\n".join(out)


def _save_sessions(store: Store, user: str = "alice") -> None:
    for i in range(3):
        store.save(user, {"session_id": "keep", "open_tasks": [f"keep task {i}"],
                          "key_decisions": [f"keep decision {i}"]})  # fmt: skip
        store.save(user, {"session_id": "gone", "open_tasks": [f"vanishing-task-{i}"],
                          "files_modified": ["src/vanishing.py"]})  # fmt: skip


def test_forget_takes_a_session_out_of_every_file_and_every_read(root: Path) -> None:
    store = Store(root)
    _save_sessions(store)
    assert store.search("alice", "vanishing").items  # indexed before
    store.view("alice")
    store.save_cache()  # a projection cache that holds the session
    local = root / ".local"
    (local / "hooks.log").write_text(
        "2026-12-07 agent: saved gone (session_end)\n2026-12-07 agent: saved keep\n"
    )
    (local / "current-session.json").write_text(json.dumps({"session_id": "gone"}))
    (local / "transcripts").mkdir()
    (local / "transcripts" / "abc.json").write_text('{"path": "/t/gone.jsonl", "x": 1}')

    done = store.forget("alice", "gone")

    assert done.events == 3 and done.record is not None
    with pytest.raises(NotFound):
        store.get("alice", "gone")
    with pytest.raises(NotFound):
        store.history("alice", "gone")
    assert [s.session_id for s in store.sessions("alice").items] == ["keep"]
    assert not store.search("alice", "vanishing").items
    assert store.get("alice", "keep").version == 3  # the other session whole
    fresh = Store(root)  # another process, from the files
    assert [s.session_id for s in fresh.sessions("alice").items] == ["keep"]
    everything = _all_bytes(root)
    assert b"vanishing" not in everything and b'"gone"' not in everything
    assert (local / "hooks.log").read_text() == "2026-12-07 agent: saved keep\n"
    assert not (local / "current-session.json").exists()
    assert not (local / "transcripts" / "abc.json").exists()
    # The record: ids and hashes only.
    (record_file,) = (root / "erased" / "alice").iterdir()
    record = parse(record_file.read_bytes().strip())
    assert record is not None and record["why"] == "forget" and len(record["lines"]) == 3
    assert b"gone" not in record_file.read_bytes() and b"vanishing" not in record_file.read_bytes()
    # The session may be saved again: a new history.
    store.save("alice", {"session_id": "gone", "open_tasks": ["new start"]})
    assert store.get("alice", "gone").version == 1
    report = verify(root)
    assert not report.findings, report.findings


def test_forget_refuses_what_it_cannot_do(root: Path) -> None:
    store = Store(root)
    _save_sessions(store)
    with pytest.raises(NotFound, match="No session 'nope'"):
        store.forget("alice", "nope")
    with pytest.raises(InvalidInput, match="session_id"):
        store.forget("alice", "../etc")
    with pytest.raises(InvalidInput, match="text must be a string of at least 4"):
        store.forget_text("abc")
    with pytest.raises(InvalidInput, match="keep_versions"):
        store.prune("alice")
    assert not (root / "erased").exists()  # nothing was recorded
    code, _, err = run_cli("forget", "--root", str(root), "--user", "alice")
    assert code == 2 and "give a SESSION to erase, or --text STRING" in err
    code, _, err = run_cli("prune", "--root", str(root), "--older-than", "5 years")
    assert code == 1 and "older_than must be a number and a unit" in err


def test_forget_text_replaces_a_leak_everywhere(root: Path) -> None:
    store = Store(root, redactor=None)  # as if the patterns had missed it
    store.save("alice", {"session_id": "a", "commands_run": [f"export KEY={SECRET}"]})
    store.save("bob", {"session_id": "b", "key_decisions": [f"rotate {SECRET} tomorrow"]})
    store.save("alice", {"session_id": "c", "open_tasks": ["nothing secret here"]})
    local = root / ".local"
    (local / "hooks.log").write_text(f"captured export KEY={SECRET}\nother line\n")
    (local / "events").mkdir()
    (local / "events" / "a.jsonl").write_text(json.dumps({"command": f"echo {SECRET}"}) + "\n")
    assert SECRET.encode() in _all_bytes(root)

    code, out, err = run_cli("forget", "--root", str(root), "--text", "-", input=SECRET + "\n")

    assert code == 0, err
    assert "Replaced the string in 2 events with [REDACTED]" in out
    assert SECRET.encode() not in _all_bytes(root, skip=())
    assert store.get("alice", "a").session_data["commands_run"] == ["export KEY=[REDACTED]"]
    assert store.get("bob", "b").session_data["key_decisions"] == ["rotate [REDACTED] tomorrow"]
    assert store.get("alice", "c").version == 1
    assert (local / "hooks.log").read_text() == "captured export KEY=[REDACTED]\nother line\n"
    records = [
        parse(line)
        for path in (root / "erased").rglob("*.jsonl")
        for line in path.read_bytes().splitlines()
    ]
    assert {r["text"] for r in records if r} == {text_hash(SECRET)}
    assert not verify(root).findings


def test_prune_keeps_the_newest_and_every_tombstone(root: Path) -> None:
    store = Store(root)
    for i in range(5):
        store.save("alice", {"session_id": "long", "open_tasks": [f"step {i}"]})
    store.save("alice", {"session_id": "short", "open_tasks": ["only"]})
    store.save("alice", {"session_id": "dead", "open_tasks": ["x"]})
    store.save("alice", {"session_id": "dead", "open_tasks": ["y"]})
    store.delete("alice", "dead")

    done = store.prune("alice", keep_versions=2)

    assert done.events == 3 + 0 + 0  # long loses 3; short has one; dead's y is its newest
    items = store.history("alice", "long").items
    assert [i.version for i in items] == [2, 1]  # versions count again from the oldest kept
    assert store.get("alice", "long").session_data["open_tasks"] == ["step 4"]
    assert store.get("alice", "short").version == 1
    with pytest.raises(NotFound):
        store.get("alice", "dead")  # still deleted
    code, out, err = run_cli(
        "prune", "--root", str(root), "--user", "alice", "--older-than", "0m", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["events"] == 2  # long's second-newest, dead's x
    assert [i.version for i in store.history("alice", "long").items] == [1]
    assert not verify(root).findings


def test_forget_with_real_git_clones_stays_forgotten(tmp_path: Path) -> None:
    """Clones A and B hold session s (committed and merged); A forgets s and pushes; B writes
    other sessions, then merges: s is unreadable on both, and after B's next write its bytes
    are in no file under either .memory/."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    a = new_repo(tmp_path / "a")
    git(a, "remote", "add", "origin", str(remote))
    git(a, "push", "-q", "origin", "main")
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(remote), str(b))
    store_a, store_b = Store(a / ".memory"), Store(b / ".memory")
    store_a.save("alice", {"session_id": "s", "open_tasks": ["secret-plan-from-a"]})
    store_a.save("alice", {"session_id": "t", "open_tasks": ["other work"]})
    commit_all(a, "a: s and t")
    git(a, "push", "-q", "origin", "main")
    git(b, "pull", "-q", "--no-rebase", "origin", "main")
    store_b.save("alice", {"session_id": "s", "open_tasks": ["secret-plan-from-b"]})
    commit_all(b, "b: s again")
    git(b, "push", "-q", "origin", "main")
    git(a, "pull", "-q", "--no-rebase", "origin", "main")
    assert store_a.get("alice", "s").version == 2

    code, out, err = run_cli("forget", "s", "--root", str(a / ".memory"), "--user", "alice")
    assert code == 0, err
    assert "committed to git" in out and "git filter-repo --replace-text" in out
    assert "every clone" in out
    commit_all(a, "forget s")
    git(a, "push", "-q", "origin", "main")

    store_b.save("alice", {"session_id": "u", "open_tasks": ["b keeps working"]})
    commit_all(b, "b: u")
    git(b, "pull", "-q", "--no-rebase", "origin", "main")  # a union merge of B's own file

    for store in (store_a, Store(b / ".memory"), store_b):
        with pytest.raises(NotFound):
            store.get("alice", "s")
        assert not store.search("alice", "secret").items
        assert {s.session_id for s in store.sessions("alice").items} >= {"t"}
    assert store_b.get("alice", "u").version == 1
    assert b"secret-plan" not in _all_bytes(a / ".memory", skip=())
    findings = verify(b / ".memory").findings
    if b"secret-plan" in _all_bytes(b / ".memory", skip=()):  # the merge brought lines back
        assert {f.kind for f in findings} == {"erased-present"}
    store_b.save("alice", {"session_id": "u", "open_tasks": ["next step"]})  # B's next write
    assert b"secret-plan" not in _all_bytes(b / ".memory", skip=())
    assert not verify(b / ".memory").findings


def test_verify_reports_erased_lines_and_repair_takes_them_out(root: Path) -> None:
    store = Store(root)
    _save_sessions(store)
    (log,) = (root / "log" / "alice").glob("*.jsonl")
    before = log.read_bytes()
    store.forget("alice", "gone")
    log.write_bytes(before)  # a merge (or a restore from a backup) brings every line back
    with pytest.raises(NotFound):
        Store(root).get("alice", "gone")
    findings = verify(root).findings
    assert [f.kind for f in findings] == ["erased-present"] * 3
    code, out, _ = run_cli("verify", "--root", str(root), "--repair")
    assert "took out 3 erased line(s)" in out
    assert b"vanishing" not in log.read_bytes()
    assert not verify(root).findings
    assert Store(root).get("alice", "keep").version == 3


def test_a_running_server_forgets_what_the_cli_forgot(root: Path, serve: type[Server]) -> None:
    server = serve(root)
    code, out, _ = run_cli("keys", "create", "alice", "--root", str(root))
    key = out.strip().split()[-1]
    with Client(server.base, key) as client:
        client.save("gone", open_tasks=["vanishing"])
        client.save("keep", open_tasks=["stays"])
        assert client.latest().session_id == "keep"
        assert client.get("gone").version == 1

        done = subprocess.run(
            [*sessionmem_cmd(), "forget", "gone", "--root", str(root), "--user", "alice"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

        # The very next request: no wait at all.
        answer = httpx.get(f"{server.base}/session/gone", headers={"x-api-key": key})
        assert answer.status_code == 404, answer.text
        assert client.search("vanishing").items == []
        # Over HTTP and the client too; never from an agent's MCP tools.
        client.save("again", open_tasks=["to forget"])
        assert client.forget("again")["events"] == 1
        with pytest.raises(NotFound):
            client.get("again")

    tools = {t["name"] for t in _mcp_tools(root)}
    assert tools and not any("forget" in t or "prune" in t for t in tools)


def _mcp_tools(root: Path) -> list[dict]:
    from sessionmem.integrations.mcp_server import build
    from sessionmem.memory import Memory

    def memory(write: bool) -> Memory:
        return Store(root).for_user("alice")

    server = build(memory, project=None, session=lambda: None)
    import asyncio

    return [t.model_dump() for t in asyncio.run(server.list_tools())]


WRITER = """
import sys
from sessionmem import Store
store = Store(sys.argv[1])
for i in range(100000):
    snap = store.save("alice", {"session_id": sys.argv[2], "open_tasks": [f"t{i}"]})
    print(snap.snapshot_id, flush=True)
"""


@pytest.mark.slow
def test_forget_and_prune_under_writers_and_sigkill(root: Path) -> None:
    """Four writers stream to other sessions while forget and prune run, and forget is killed
    at random moments: no acknowledged snapshot of another session is lost, the forgotten
    session is all there or all gone, and the folder verifies clean (after a repair of lines
    a killed forget left erased but present)."""
    store = Store(root)
    rng = random.Random(24)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), f"w{n}"],
            stdout=subprocess.PIPE,
            env=env,
        )
        for n in range(4)
    ]
    try:
        for w in writers:
            assert w.stdout is not None and w.stdout.readline()
        outcomes, killed = [], 0

        def forget(victim: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [*sessionmem_cmd(), "forget", victim, "--root", str(root), "--user", "alice"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        # How long a whole forget takes here (start to exit): the kills land within it.
        store.save("alice", {"session_id": "timed", "open_tasks": ["t"]})
        started = time.monotonic()
        assert forget("timed").wait() == 0
        lifetime = time.monotonic() - started
        for round_ in range(12):
            victim = f"victim{round_}"
            for i in range(5):
                store.save("alice", {"session_id": victim, "open_tasks": [f"v{i}"]})
            proc = forget(victim)
            time.sleep(rng.uniform(0.0, lifetime))
            proc.send_signal(signal.SIGKILL)
            killed += proc.wait() == -signal.SIGKILL
            try:
                n = Store(root).get("alice", victim).version
            except NotFound:
                n = 0
            assert n in (0, 5), f"round {round_}: {n} of 5 versions left"
            outcomes.append(n)
            if round_ % 3 == 2:
                store.prune("alice", keep_versions=3)
    finally:
        for w in writers:
            w.send_signal(signal.SIGKILL)
    acked: dict[str, list[str]] = {}
    for n, w in enumerate(writers):
        out, _ = w.communicate()
        acked[f"w{n}"] = out.decode().split()
    check = Store(root)
    for session, ids in acked.items():
        stored = [e.snapshot_id for e in check.history("alice", session, limit=1000).items]
        present = set(stored)
        # prune takes only the oldest versions: what is missing of the acknowledged ones is a
        # prefix, and everything acknowledged after it is there
        first = next(i for i, x in enumerate(ids) if x in present)
        assert all(x in present for x in ids[first:]), session
        assert len(present - set(ids)) <= 1  # the one write a kill cut before its answer
    report = verify(root)
    assert {f.kind for f in report.findings} <= {"erased-present", "forget-leftover"}, (
        report.findings
    )
    verify(root, repair=True)
    assert not verify(root).findings
    assert killed, "every forget had finished before its SIGKILL"


def test_retention_from_config_runs_once_a_day(root: Path, serve: type[Server]) -> None:
    from sessionmem import retention

    store = Store(root)
    for i in range(5):
        store.save("alice", {"session_id": "long", "open_tasks": [f"step {i}"]})
    (root / "config.toml").write_text('[retention]\nkeep_versions = 4\nolder_than = "400d"\n')
    rules = retention.read(root)
    assert rules == retention.Retention(4, 400 * 86_400_000)
    day = 86_400.0
    assert retention.run_if_due(store, rules, now=100 * day) == {"ran": True, "events": 1}
    assert retention.run_if_due(store, rules, now=100.5 * day)["ran"] is False  # not a day yet
    assert len(store.history("alice", "long").items) == 4

    # `serve` applies it at start (the day since the last run has passed: now > 100 days)
    (root / "config.toml").write_text("[retention]\nkeep_versions = 2\n")
    server = serve(root)
    deadline = time.monotonic() + 30
    while len(Store(root).history("alice", "long").items) > 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [i.version for i in Store(root).history("alice", "long").items] == [2, 1]
    server.stop()

    for text, words in [
        ("[retention]\nkeep_versions = 0\n", "retention.keep_versions must be a whole number"),
        ('[retention]\nolder_than = "soon"\n', "retention.older_than must be a number and a unit"),
        ("[retention]\nkeep = 3\n", "retention.keep is not a setting"),
    ]:
        (root / "config.toml").write_text(text)
        done = subprocess.run(
            [*sessionmem_cmd(), "serve", "--root", str(root), "--port", "1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1 and words in done.stderr, done.stderr


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
    st.sampled_from(["v", "type", "id", "lines", "session", "until", "text", "why"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.lists(
        st.one_of(st.integers(), st.text(max_size=70)), max_size=5), max_size=3)),
)))  # fmt: skip
def test_any_bytes_in_an_erase_file_parse_or_are_passed_over(raw: bytes) -> None:
    record = parse(raw)
    assert record is None or (record["type"] == "erase" and isinstance(record["lines"], list))


def test_a_damaged_erase_file_never_stops_a_reader(root: Path) -> None:
    store = Store(root)
    _save_sessions(store)
    (log,) = (root / "log" / "alice").glob("*.jsonl")
    gone = [line for line in log.read_bytes().splitlines(keepends=True) if b'"gone"' in line]
    store.forget("alice", "gone")
    folder = root / "erased" / "alice"
    junk = b'\xef\xbb\xbf{"v":1,"type":"erase"\n\x00\xff garbage\n'
    (folder / "zz-other.jsonl").write_bytes(junk)
    (folder / "notes.txt").write_text("not a record file")
    os.symlink("/etc/passwd", folder / "link.jsonl")
    # An erased line back with a BOM in front (the fold's slow path) is hidden as well.
    with open(log, "ab") as f:
        f.write(b"\xef\xbb\xbf" + gone[0])
    fresh = Store(root)
    assert [s.session_id for s in fresh.sessions("alice").items] == ["keep"]
    with pytest.raises(NotFound):
        fresh.get("alice", "gone")
    kinds = [f.kind for f in verify(root).findings]
    assert "erased-present" in kinds


def test_forget_over_http_answers_like_every_route(root: Path) -> None:
    from fastapi.testclient import TestClient

    from sessionmem.http.app import PREFIX, create_app

    store = Store(root)
    key = store.keys().create("alice")[1]
    store.save("alice", {"session_id": "s", "open_tasks": ["x"]})
    with TestClient(create_app(store)) as http:
        h = {"x-api-key": key}
        missing = http.post(f"{PREFIX}/session/nope/forget", headers=h)
        assert missing.status_code == 404 and "No session 'nope'" in missing.json()["detail"]
        bad = http.post(f"{PREFIX}/session/a b/forget", headers=h)
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "session_id"
        assert http.post(f"{PREFIX}/session/s/forget").status_code == 401
        assert http.get(f"{PREFIX}/session/s/forget", headers=h).status_code in (404, 405)
        done = http.post(f"{PREFIX}/session/s/forget", headers=h)
        assert done.status_code == 200
        assert set(done.json()) == {"session_id", "forgotten", "events", "record", "committed"}
        assert http.get(f"{PREFIX}/session/s", headers=h).status_code == 404


def test_forget_and_prune_never_make_a_memory_folder(tmp_path: Path) -> None:
    missing = tmp_path / "none" / ".memory"
    for argv in (
        ["forget", "s"],
        ["forget", "--text", "abcdef"],
        ["prune", "--keep-versions", "2"],
    ):
        code, _, err = run_cli(*argv, "--root", str(missing), "--user", "alice")
        assert code == 1 and "No memory folder at" in err, (argv, err)
    assert not missing.exists()
