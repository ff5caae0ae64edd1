"""`sessionmem sync` with real git (docs/sync.md): a bare remote and several clones; saves in
each, syncs at the same moment, a fresh clone, refusing remotes, SIGKILL mid-sync, erase records
travelling, the background sync of a hook — and the working tree, the index, HEAD and every
branch exactly where they were."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionmem import Store
from sessionmem.sync import lines, union
from sessionmem.verify import verify

from conftest import REPO, run_cli, sessionmem_cmd
from helpers import GIT_ENV, commit_all, git

USER = "alice"


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, "HOME": str(home), "SESSIONMEM_HOME": str(home / "smh")}


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`sessionmem ARGS` in `repo`, as a separate process (as a user or a hook runs it)."""
    return subprocess.run([*sessionmem_cmd(), *args], cwd=repo, capture_output=True, text=True,
                          env=_env(repo.parent), timeout=300)  # fmt: skip


def _setup(tmp_path: Path, clones: int = 3) -> tuple[Path, list[Path]]:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    first = tmp_path / "c0"
    git(tmp_path, "clone", "-q", str(remote), str(first))
    (first / "README.md").write_text("app\n")
    done = cli(first, "init", "--sync-branch")
    assert done.returncode == 0, done.stderr
    commit_all(first, "init")
    git(first, "push", "-q", "origin", "main")
    repos = [first]
    for n in range(1, clones):
        repos.append(tmp_path / f"c{n}")
        git(tmp_path, "clone", "-q", str(remote), str(repos[-1]))
    return remote, repos


def save(repo: Path, session: str, task: str) -> str:
    done = cli(repo, "save", "--user", USER, "--session-id", session, "--task", task, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["snapshot_id"])


def sync(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(repo, "sync", *args)


def events(repo: Path) -> list[str]:
    """Every event id in the clone's log files (duplicates kept: they must not exist)."""
    ids = []
    for f in sorted((repo / ".memory" / "log").glob("*/*.jsonl")):
        ids += [json.loads(line)["id"] for line in f.read_bytes().splitlines() if line.strip()]
    return ids


def where(repo: Path) -> tuple[str, str, str]:
    """HEAD, every local branch, and the index: what a sync must never move."""
    return (git(repo, "rev-parse", "HEAD"), git(repo, "for-each-ref", "refs/heads"),
            git(repo, "ls-files", "--stage"))  # fmt: skip


def test_three_clones_syncing_at_once_get_every_event_exactly_once(tmp_path: Path) -> None:
    _remote, repos = _setup(tmp_path)
    before = {r: where(r) for r in repos}
    saved: list[str] = []
    for rnd in range(10):
        for n, repo in enumerate(repos):
            saved.append(save(repo, f"s{n}", f"round {rnd} in clone {n}"))
        results: dict[int, subprocess.CompletedProcess[str]] = {}
        pair = [0, 1] if rnd % 2 == 0 else [1, 2]

        def run(i: int, out: dict[int, subprocess.CompletedProcess[str]] = results) -> None:
            out[i] = sync(repos[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in pair]  # at the same moment
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in pair:
            assert results[i].returncode == 0, results[i].stderr
    for repo in repos:  # everyone syncs once more: all meet
        assert sync(repo).returncode == 0
    assert sync(repos[0]).returncode == 0
    for repo in repos:
        ids = events(repo)
        assert sorted(ids) == sorted(saved), repo  # every event, exactly once
        assert git(repo, "status", "--porcelain") == ""
        assert where(repo) == before[repo]
        assert "sessionmem" not in git(repo, "branch", "--list")  # no new local branch
        assert not verify(repo / ".memory").damaged
    store = Store(repos[2] / ".memory")
    assert {s.session_id for s in store.sessions(USER).items} == {"s0", "s1", "s2"}
    assert store.get(USER, "s0").version == 10

    fresh = tmp_path / "fresh"  # a new clone gets everything with one sync
    git(tmp_path, "clone", "-q", str(_remote), str(fresh))
    done = sync(fresh)
    assert done.returncode == 0, done.stderr
    assert f"received {len(saved)} events" in done.stdout
    assert sorted(events(fresh)) == sorted(saved)
    assert git(fresh, "status", "--porcelain") == ""
    status = sync(fresh, "--status")
    assert "0 events only here, 0 events only on origin/sessionmem" in status.stdout
    assert "Last sync: 20" in status.stdout


def test_status_says_what_is_where(tmp_path: Path) -> None:
    _remote, (a, b, _c) = _setup(tmp_path)
    never = sync(a, "--status")
    assert never.returncode == 0 and "it has no such branch yet" in never.stdout
    assert "Last sync: never" in never.stdout
    save(a, "s", "one")
    save(a, "s", "two")
    assert sync(a).returncode == 0
    save(b, "t", "three")
    st = sync(b, "--status", "--json")
    assert json.loads(st.stdout)["only_here"] == 1 and json.loads(st.stdout)["only_there"] == 2


def test_a_refusing_or_missing_remote_is_one_line_and_nothing_is_lost(tmp_path: Path) -> None:
    remote, (a, _b, _c) = _setup(tmp_path)
    first = save(a, "s", "before")
    assert sync(a).returncode == 0
    hook = remote / "hooks" / "pre-receive"  # a remote that refuses every push
    hook.write_text("#!/bin/sh\necho 'no permission to push here' >&2\nexit 1\n")
    hook.chmod(0o755)
    kept = save(a, "s", "while refused")
    done = sync(a)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: git push to 'origin' failed")
    assert "Nothing was lost" in lines[0]
    hook.unlink()
    assert set(events(a)) >= {first, kept}

    git(a, "remote", "set-url", "origin", str(tmp_path / "gone.git"))  # unreachable
    done = sync(a)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "Could not fetch from 'origin'" in done.stderr and "Nothing was lost" in done.stderr
    git(a, "remote", "set-url", "origin", "https://127.0.0.1:9/none.git")  # needs a network
    done = sync(a, "--remote", "origin")
    assert done.returncode == 1 and "Could not fetch" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sync(a, "--remote", "nope").stderr.count("\n") == 1  # no such remote
    assert "no remote 'nope'" in sync(a, "--remote", "nope").stderr
    bad = sync(a, "--branch", "a..b")
    assert bad.returncode != 0 and "branch" in bad.stderr and bad.stderr.count("\n") == 1
    git(a, "remote", "set-url", "origin", str(remote))
    assert sync(a).returncode == 0  # and back: the refused save goes now
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(remote), str(fresh))
    assert sync(fresh).returncode == 0 and set(events(fresh)) == {first, kept}


@pytest.mark.slow
def test_a_sync_killed_anywhere_leaves_readable_logs(tmp_path: Path) -> None:
    _remote, (a, b, _c) = _setup(tmp_path)
    rng = random.Random(7)
    saved: list[str] = []
    for n in range(30):
        saved.append(save(a if n % 2 else b, f"s{n % 3}", f"task {n}"))
    assert sync(b).returncode == 0
    # Time a whole sync, then kill others at random points within that span.
    t0 = time.monotonic()
    assert sync(a).returncode == 0
    span = time.monotonic() - t0
    killed = 0
    for n in range(8):
        saved.append(save(a if n % 2 else b, f"k{n}", f"killed round {n}"))
        repo = a if n % 2 else b
        proc = subprocess.Popen([*sessionmem_cmd(), "sync"], cwd=repo, env=_env(repo.parent),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0, span))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        for r in (a, b):
            report = verify(r / ".memory")
            assert not report.damaged, report.findings  # readable after every kill
            assert git(r, "status", "--porcelain") == ""
    assert killed >= 1
    for repo in (a, b, a):
        done = sync(repo)
        assert done.returncode == 0, done.stderr  # the next sync completes
    for repo in (a, b):
        assert sorted(events(repo)) == sorted(saved)


def test_erase_records_travel_and_forgotten_lines_leave_every_clone(tmp_path: Path) -> None:
    remote, (a, b, _c) = _setup(tmp_path)
    save(a, "secret", "a leaked token abcd")
    save(b, "secret", "more of it abcd")
    kept = save(b, "other", "stays")
    for repo in (a, b, a):
        assert sync(repo).returncode == 0
    done = cli(a, "forget", "secret", "--user", USER)
    assert done.returncode == 0, done.stderr
    for repo in (a, b):
        assert sync(repo).returncode == 0
    for repo in (a, b):
        logs = b"".join(f.read_bytes() for f in (repo / ".memory" / "log").glob("*/*.jsonl"))
        assert b"abcd" not in logs, repo  # gone from the files, not only hidden
        assert events(repo) == [kept]
    tip = git(b, "show", "refs/sessionmem/sessionmem:log/" + USER + "/" +
              next((a / ".memory" / "log" / USER).glob("*.jsonl")).name)  # fmt: skip
    assert "abcd" not in tip  # and from the memory branch's newest commit
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(remote), str(fresh))
    assert sync(fresh).returncode == 0 and events(fresh) == [kept]


def test_a_branch_that_commits_memory_keeps_working(tmp_path: Path) -> None:
    """Both ways at once: memory committed on main (no --sync-branch) and synced too."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    a, b = tmp_path / "a", tmp_path / "b"
    git(tmp_path, "clone", "-q", str(remote), str(a))
    assert cli(a, "init").returncode == 0
    one = save(a, "s", "committed on main")
    commit_all(a, "memory on main")
    git(a, "push", "-q", "origin", "main")
    assert sync(a).returncode == 0
    git(tmp_path, "clone", "-q", str(remote), str(b))
    two = save(b, "t", "only synced")
    assert sync(b).returncode == 0
    head = git(b, "rev-parse", "HEAD")
    assert sync(a).returncode == 0
    assert set(events(a)) == {one, two}
    assert git(b, "rev-parse", "HEAD") == head
    assert ".memory/log/" in git(a, "status", "--porcelain")  # b's file: for a's next commit


def test_a_hook_installed_with_sync_syncs_in_the_background(tmp_path: Path) -> None:
    remote, (a, _b, _c) = _setup(tmp_path)
    done = cli(a, "install", "claude-code", "--scope", "local", "--sync")
    assert done.returncode == 0, done.stderr
    settings_file = json.loads((a / ".claude" / "settings.local.json").read_text())
    commands = json.dumps(settings_file)
    assert "hook claude-code --sync" in commands
    transcript = REPO / "data" / "transcripts" / "claude" / "session-9eda1058.jsonl"  # real
    payload = json.dumps({"hook_event_name": "SessionEnd", "session_id": "hooked",
                          "cwd": str(a), "transcript_path": str(transcript)})  # fmt: skip
    hooked = subprocess.run([*sessionmem_cmd(), "hook", "claude-code", "--sync"], cwd=a,
                            input=payload, capture_output=True, text=True,
                            env={**_env(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"},
                            timeout=60)  # fmt: skip
    assert hooked.returncode == 0
    log = a / ".memory" / ".local" / "hooks.log"
    deadline = time.monotonic() + 60
    while "sync Synced" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = log.read_text()
    assert "sync started in the background" in text and "sync Synced with origin/sessionmem" in text
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(remote), str(fresh))
    assert sync(fresh).returncode == 0
    assert any(json.loads(ln)["session_id"] == "hooked" for f in
               (fresh / ".memory" / "log").glob("*/*.jsonl")
               for ln in f.read_bytes().splitlines())  # fmt: skip

    git(a, "remote", "set-url", "origin", str(tmp_path / "nowhere.git"))  # a failure: logged
    subprocess.run([*sessionmem_cmd(), "hook", "claude-code", "--sync"], cwd=a, input=payload,
                   capture_output=True, text=True, env=_env(tmp_path), timeout=60)  # fmt: skip
    deadline = time.monotonic() + 60
    while "sync sync failed" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "sync sync failed: Could not fetch from 'origin'" in log.read_text()


def test_a_hostile_memory_branch_writes_nothing_outside_the_rules(tmp_path: Path) -> None:
    """Files on the remote's memory branch that are not `log|erased/<user>/<writer>.jsonl` are
    never written into the clone."""
    remote, (a, b, _c) = _setup(tmp_path)
    save(a, "s", "fine")
    assert sync(a).returncode == 0
    evil = tmp_path / "evil"
    git(tmp_path, "clone", "-q", "-b", "sessionmem", str(remote), str(evil))
    (evil / "log" / "Bad User").mkdir(parents=True)
    (evil / "log" / "Bad User" / "x.jsonl").write_text("{}\n")
    (evil / "log" / USER / "notes.txt").write_text("hello\n")
    (evil / "hooks").mkdir()
    (evil / "hooks" / "post-checkout").write_text("#!/bin/sh\necho owned\n")
    commit_all(evil, "hostile")
    git(evil, "push", "-q", "origin", "sessionmem")
    assert sync(b).returncode == 0
    memory = b / ".memory"
    assert not (memory / "log" / "Bad User").exists() and not (memory / "hooks").exists()
    assert not (memory / "log" / USER / "notes.txt").exists()
    assert len(events(b)) == 1


@given(st.lists(st.binary(max_size=8).map(lambda x: x.replace(b"\n", b"") + b"\n"), max_size=8),
       st.lists(st.binary(max_size=8).map(lambda x: x.replace(b"\n", b"") + b"\n"), max_size=8))
@settings(max_examples=300, deadline=None)
def test_union_keeps_every_line_of_both(xs: list[bytes], ys: list[bytes]) -> None:
    a, b = b"".join(xs), b"".join(ys)
    u = union(a, b)
    assert set(lines(u)) == set(lines(a)) | set(lines(b))
    assert u.startswith(a) or u.startswith(b)
    assert union(u, a) == u and union(u, b) == u  # merging again changes nothing
    assert union(a, a + b) == a + b and union(a + b, a) == a + b  # the longer of a prefix


def test_sync_outside_git_or_without_a_folder_is_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    Store(plain / ".memory").save(USER, {"session_id": "s"})
    code, _out, err = run_cli("sync", "--root", str(plain / ".memory"))
    assert code == 1 and "not in a git repository" in err and err.count("\n") == 1


def test_install_with_and_without_sync_keeps_one_hook_and_uninstalls_it(tmp_path: Path) -> None:
    _remote, (a,) = _setup(tmp_path, clones=1)
    settings_path = a / ".claude" / "settings.local.json"

    def commands() -> list[str]:
        found = json.loads(settings_path.read_text()).get("hooks", {})
        return [h["command"] for groups in found.values() for g in groups for h in g["hooks"]]

    for flags in (["--sync"], [], ["--sync"]):
        done = cli(a, "install", "claude-code", "--scope", "local", *flags)
        assert done.returncode == 0, done.stderr
        listed = commands()
        assert len(listed) == 3  # PreCompact, SessionStart, SessionEnd: never twice
        assert all(c.endswith(" --sync") == bool(flags) for c in listed), listed
    done = cli(a, "install", "claude-code", "--scope", "local", "--uninstall")
    assert done.returncode == 0 and commands() == []
