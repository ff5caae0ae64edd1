"""The CLI in this process (exact output) and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sessionmem import Store
from sessionmem.cli import build_parser

from conftest import run_cli, sessionmem_cmd


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    return run_cli(*args, input=input, env={"SESSIONMEM_USER": "alice"})


@pytest.fixture
def seeded(root: Path) -> Store:
    store = Store(root)
    store.append(
        "alice",
        {
            "session_id": "s1",
            "open_tasks": ["write parser", "add tests"],
            "key_decisions": ["use orjson"],
            "files_modified": ["src/p.py"],
            "project_path": "/w/app",
            "git_branch": "main",
        },
    )
    store.append(
        "alice",
        {
            "session_id": "s1",
            "open_tasks": ["add tests", "release"],
            "key_decisions": ["use orjson", "one codec module"],
            "files_modified": ["src/p.py", "tests/test_p.py"],
            "commands_run": ["pytest -q"],
            "project_path": "/w/app",
            "git_branch": "main",
            "event": "pre_compact",
        },
    )
    return store


def test_every_command_has_help() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = sorted(sub.choices)  # type: ignore[arg-type]
    assert {"save", "latest", "serve", "verify", "install", "keys"} <= set(names)
    for name in names:
        code, out, _ = run(name, "--help")
        assert code == 0 and out.startswith("usage: sessionmem"), name
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in names:
        assert f"sessionmem {name}" in readme, f"{name} is not documented in README.md"


def test_keys_create_list_revoke(root: Path) -> None:
    code, out, err = run("keys", "create", "alice", "--root", str(root))
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith("smk_") and len(key) > 40
    code, out, _ = run("keys", "list", "--root", str(root))
    (line,) = out.splitlines()
    key_id, user, _created = line.split()
    assert user == "alice" and len(key_id) == 12
    assert key not in (root / ".local" / "keys.json").read_text()
    code, out, _ = run("keys", "revoke", key_id, "--root", str(root))
    assert out == f"Revoked key {key_id} of user 'alice'.\n"
    assert run("keys", "list", "--root", str(root))[1] == (
        "No API keys yet; `sessionmem keys create USER` makes one.\n"
    )


def test_keys_create_refuses_bad_user(root: Path) -> None:
    code, out, err = run("keys", "create", "../evil", "--root", str(root))
    assert code == 1 and out == ""
    assert "'../evil' is not a valid user id" in err


def test_history_show_diff_sessions_exact(root: Path, seeded: Store) -> None:
    v1, v2 = (seeded.get("alice", "s1", version=n) for n in (1, 2))
    code, out, _ = run("history", "s1", "--root", str(root))
    assert code == 0
    lines = [ln.rstrip() for ln in out.splitlines()]
    assert lines[0].split() == [
        "version",
        "created_at",
        "event",
        "tasks",
        "decisions",
        "files",
        "commands",
        "snapshot_id",
    ]
    assert lines[1].split() == [
        "2",
        v2.created_at,
        "pre_compact",
        "2",
        "2",
        "2",
        "1",
        v2.snapshot_id,
    ]
    assert lines[2].split() == [
        "1",
        v1.created_at,
        "checkpoint",
        "2",
        "1",
        "1",
        "0",
        v1.snapshot_id,
    ]
    code, out, _ = run("show", "s1", "--version", "1", "--root", str(root))
    assert out == (
        f"session   s1\nversion   1\nsnapshot  {v1.snapshot_id}\nevent     checkpoint\n"
        f"created   {v1.created_at}\npath      /w/app\nbranch    main\n"
        "open_tasks (2)\n  - write parser\n  - add tests\n"
        "key_decisions (1)\n  - use orjson\nfiles_modified (1)\n  - src/p.py\ncommands_run (0)\n"
    )
    code, out, _ = run("diff", "s1", "--root", str(root))
    assert out == (
        f"s1: version 1 ({v1.created_at}) -> version 2 ({v2.created_at})\n"
        "files_modified:\n  + tests/test_p.py\n"
        "commands_run:\n  + pytest -q\n"
        "key_decisions:\n  + one codec module\n"
        "open_tasks:\n  - write parser\n  + release\n"
        "event: 'checkpoint' -> 'pre_compact'\n"
    )
    code, out, _ = run("sessions", "--root", str(root))
    assert [ln.split() for ln in out.splitlines()] == [
        ["session_id", "version", "created_at", "event", "tasks", "branch", "project"],
        ["s1", "2", v2.created_at, "pre_compact", "2", "main", "/w/app"],
    ]
    code, out, _ = run("diff", "s1", "2", "1", "--json", "--root", str(root))
    assert code == 0
    assert json.loads(out)["removed"]["commands_run"] == ["pytest -q"]


def test_delete_and_errors(root: Path, seeded: Store) -> None:
    code, out, err = run("show", "s1", "--version", "9", "--root", str(root))
    assert code == 1 and out == ""
    assert err.startswith("Error: Session 's1' has versions 1 to 2; there is no version 9.")
    assert (
        run("delete", "s1", "--root", str(root))[1] == "Deleted session s1 (2 versions hidden).\n"
    )
    code, out, err = run("show", "s1", "--root", str(root))
    assert code == 1 and out == ""
    assert err == (
        "Error: No session 's1' for user 'alice'. `sessionmem sessions` lists them. "
        f"(memory folder: {root})\n"
    )


def test_save_and_latest(root: Path) -> None:
    code, out, _ = run(
        "save",
        "--session-id",
        "s9",
        "--task",
        "a",
        "--task",
        "b",
        "--decision",
        "d1",
        "--root",
        str(root),
    )
    assert code == 0 and out.startswith("Saved s9 version 1 (")
    code, out, _ = run("save", "--session-id", "s9", "--merge", "--task", "c", "--root", str(root))
    assert out.startswith("Saved s9 version 2 (")
    snap = Store(root).get("alice", "s9")
    assert snap.open_tasks == ["a", "b", "c"]
    assert snap.session_data["key_decisions"] == ["d1"]
    code, out, _ = run("save", "--session-id", "s9", "--task", "only", "--root", str(root))
    assert Store(root).get("alice", "s9").session_data["key_decisions"] == []  # replaces
    code, out, _ = run(
        "save",
        "--from-json",
        "-",
        "--root",
        str(root),
        input='{"session_id": "s9", "open_tasks": ["from stdin"]}',
    )
    assert code == 0
    code, out, _ = run("latest", "--format", "json", "--root", str(root))
    assert '"open_tasks":["from stdin"]' in out
    code, _, err = run("save", "--session-id", "bad id", "--root", str(root))
    assert code == 1 and err.startswith("Error: session_id must be 1-128 characters")


def test_cli_as_a_subprocess_finds_memory_upward(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "deep" / "er").mkdir(parents=True)
    env = {**os.environ, "SESSIONMEM_USER": "carol"}
    env.pop("SESSIONMEM_ROOT", None)
    subprocess.run(
        [*sessionmem_cmd(), "init"], cwd=project, env=env, check=True, capture_output=True
    )
    out = subprocess.run(
        [*sessionmem_cmd(), "save", "--session-id", "x", "--task", "t"],
        cwd=project / "deep" / "er",
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (project / ".memory" / "log" / "carol").is_dir()
    assert not (project / "deep" / "er" / ".memory").exists()
    shown = subprocess.run(
        [*sessionmem_cmd(), "latest", "--format", "markdown"],
        cwd=project / "deep",
        env=env,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0
    assert shown.stdout.startswith("# Session memory: x (version 1)\n")
    assert "## Open tasks\n- t\n" in shown.stdout


def test_init_is_idempotent_and_repairs(root: Path) -> None:
    code, out, _ = run("init", "--root", str(root))
    assert code == 0 and out.startswith(f"Initialised {root}: made ")
    assert run("init", "--root", str(root))[1] == f"{root} is already set up; nothing to do.\n"
    (root / ".gitattributes").unlink()
    (root / "README.md").write_text("our own notes\n")
    code, out, _ = run("init", "--root", str(root))
    assert out == f"Initialised {root}: made .gitattributes\n"
    assert (root / "README.md").read_text() == "our own notes\n"  # never overwritten
    assert (root / ".gitattributes").read_text() == (
        "log/**/*.jsonl text eol=lf merge=union\nerased/**/*.jsonl text eol=lf merge=union\n"
    )


def _git_repo(path: Path) -> Path:
    from helpers import commit_all, git

    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "src" / "pkg").mkdir(parents=True)
    (path / "src" / "pkg" / "m.py").write_text("x = 1\n")
    commit_all(path, "code")
    return path


@pytest.mark.parametrize("initialised", [False, True])
def test_the_memory_folder_is_found_as_git_finds_its_own(
    tmp_path: Path, initialised: bool, private_store: Path
) -> None:
    """Memory goes to a repository's .memory/ only once it exists (`init`): else to the
    per-user store, never into the working tree (docs/decisions.md, "Where the hooks write")."""
    repo = _git_repo(tmp_path / "repo")
    env = {**os.environ, "SESSIONMEM_USER": "dev"}
    env.pop("SESSIONMEM_ROOT", None)
    if initialised:
        subprocess.run([*sessionmem_cmd(), "init"], cwd=repo, env=env, check=True)
    deep = repo / "src" / "pkg"
    before = subprocess.run(
        [*sessionmem_cmd(), "latest"], cwd=deep, env=env, capture_output=True, text=True
    )
    if not initialised:  # a read never creates it, and says where it looked
        assert before.returncode == 1
        assert f"No memory folder at {private_store} (no .memory/ found upward from {deep}" in (
            before.stderr
        )
        assert not (repo / ".memory").exists()
    saved = subprocess.run(
        [*sessionmem_cmd(), "save", "--session-id", "s", "--decision", "Use tomllib"],
        cwd=deep,
        env=env,
        capture_output=True,
        text=True,
    )
    assert saved.returncode == 0, saved.stderr
    if not initialised:
        assert f"no .memory/ here: saved in the per-user store {private_store}" in saved.stderr
        assert (private_store / "log" / "dev").is_dir() and not (repo / ".memory").exists()
        assert not subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True
        ).stdout
        return
    assert "made the memory folder" not in saved.stderr
    assert (repo / ".memory" / "log" / "dev").is_dir() and not (deep / ".memory").exists()
    # a .memory/ nearer than the top level wins, as the nearest .git would
    nested = deep / ".memory"
    subprocess.run(
        [*sessionmem_cmd(), "init"], cwd=deep, env={**env, "SESSIONMEM_ROOT": str(nested)}
    )
    shown = subprocess.run(
        [*sessionmem_cmd(), "latest"], cwd=deep, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 1 and str(nested) in shown.stderr


def test_a_cli_save_reaches_the_sessionstart_briefing(tmp_path: Path, private_store: Path) -> None:
    """`save` records the project (git top level), branch and commit as the hooks do, so the
    next SessionStart finds it; `latest --format markdown` prints that very briefing."""
    from helpers import git

    repo = _git_repo(tmp_path / "repo")
    env = {**os.environ, "SESSIONMEM_USER": "dev", "CLAUDE_PROJECT_DIR": str(repo)}
    env.pop("SESSIONMEM_ROOT", None)
    subprocess.run(
        [*sessionmem_cmd(), "save", "--session-id", "s1", "--task", "Write the parser",
         "--decision", "Use tomllib"],
        cwd=repo / "src", env=env, check=True, capture_output=True,
    )  # fmt: skip
    data = Store(private_store).get("dev", "s1").session_data  # (no .memory/ in this repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert (data["project_path"], data["git_branch"], data["git_commit"]) == (
        str(repo),
        "main",
        head,
    )
    payload = '{"hook_event_name": "SessionStart", "source": "startup", "session_id": "s2"}'
    hook = subprocess.run(
        [*sessionmem_cmd(), "hook", "claude-code"],
        input=payload, cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert hook.stdout.startswith("# Session memory: s1 (version 1)\n")
    assert "## Open tasks\n- Write the parser\n" in hook.stdout
    assert "## Key decisions\n- Use tomllib\n" in hook.stdout
    cli = subprocess.run(
        [*sessionmem_cmd(), "latest", "--format", "markdown"],
        cwd=repo / "src" / "pkg", env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert cli.stdout == hook.stdout


def test_the_client_raises_what_the_store_raises(store: Store, keys: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from sessionmem import Client, ClientError, InvalidInput, NotFound, Unauthorized
    from sessionmem.http.app import create_app

    with TestClient(create_app(store)) as http:
        client = Client(str(http.base_url), keys["alice"], http=http)
        with pytest.raises(NotFound) as missing:
            client.get("nope")
        assert isinstance(missing.value, ClientError) and missing.value.status == 404
        assert missing.value.url is not None and missing.value.url.endswith("/session/nope")
        with pytest.raises(InvalidInput) as bad:
            client.save({"session_id": "bad id"})
        assert bad.value.errors[0].field == "session_id"
        with pytest.raises(NotFound):
            store.get("alice", "nope")  # the same class from the library itself
        anonymous = Client(str(http.base_url), "smk_wrong", http=http)
        with pytest.raises(Unauthorized):
            anonymous.latest()


def test_serve_stop_never_signals_a_process_that_took_the_pid(tmp_path: Path) -> None:
    """The pid in .local/serve.json may belong to another process by now: --stop checks that
    it is still the server it started (pid and start time) before it signals anything."""
    root = tmp_path / ".memory"
    (root / ".local").mkdir(parents=True)
    other = subprocess.Popen(["sleep", "30"])
    try:
        (root / ".local" / "serve.json").write_text(
            json.dumps({"pid": other.pid, "started": "1", "host": "127.0.0.1", "port": 1})
        )
        code, _, err = run("serve", "--stop", "--root", str(root))
        assert code == 1 and "No server started with --background" in err
        assert other.poll() is None, "an unrelated process was signalled"
    finally:
        other.kill()
        other.wait()


def test_the_parser_names_the_rule_books_events() -> None:
    """The parser keeps its own copy of the events (importing the codec would slow its start)."""
    from sessionmem.cli.parser import SNAPSHOT_EVENTS as parsers
    from sessionmem.rules import SNAPSHOT_EVENTS as rules

    assert parsers == rules
