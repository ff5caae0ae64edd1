"""Every command, given what a tired person or a hostile script types: one `Error:` line naming
the flag and the rule, a non-zero exit, nothing on stdout, never a traceback."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from sessionmem import Store

from conftest import run_cli, sessionmem_cmd


def forged(value: object) -> str:
    import json

    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture
def where(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / ".memory"
    Store(root).append("alice", {"session_id": "s1", "open_tasks": ["a"]})
    Store(root).append("alice", {"session_id": "s1", "open_tasks": ["b"]})
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "a-file").write_text("x")
    broken = tmp_path / "broken" / ".memory"
    broken.mkdir(parents=True)
    (broken / "log").write_text("a file where the log folder should be")
    return {
        "root": str(root),
        "tmp": str(tmp_path),
        "file": str(tmp_path / "a-file"),
        "broken": str(broken),
    }


MISTAKES = [
    # (arguments, what the one line must say); {root} etc. are filled in
    (["show", "s1", "--snapshot-id", "xyz"], "snapshot_id must be a snapshot id"),
    (["show", "s1", "--version", "\u00b2"], "version must be a whole number from 1"),
    (["show", "s1", "--version", "0"], "version must be a whole number from 1"),
    (["show", "s1", "--version", "9" * 30], "version must be a whole number from 1"),
    (["show", "s1", "--version", "7"], "there is no version 7"),
    (["show", "no/such", "--version", "1"], "session_id must be 1-128 characters"),
    (["show", "nope"], "No session 'nope' for user 'alice'"),
    (["save", "--from-json", "{tmp}/missing.json"], "--from-json: cannot read"),
    (["save", "--from-json", "{tmp}/bad.json"], "is not valid JSON"),
    (["save", "--from-json", "{tmp}/list.json"], "must hold a JSON object"),
    (["save", "--session-id", "bad id"], "session_id must be 1-128 characters"),
    (["save", "--session-id", "x", "--event", "nope"], "event must be one of pre_compact,"),
    (["save"], "--session-id is required"),
    (["serve", "--durability", "bogus"], "argument --durability: invalid choice"),
    (["serve", "--port", "99999"], "must be a port number from 1 to 65535"),
    (["serve", "--port", "\u0661\u0662"], "must be a port number from 1 to 65535"),
    (["serve", "--workers", "0"], "must be a whole number from 1"),
    (["diff", "s1", "\u00b2"], "from must be a version number"),
    (["diff", "s1", "\u2460"], "from must be a version number"),
    (["diff", "s1", "1", "9" * 4301], "to must be a whole number from 1"),
    (["latest", "--event", "foo"], "event must be one of pre_compact, session_end, checkpoint"),
    (["latest", "--format", "yaml"], "argument --format: invalid choice"),
    (["history", "s1", "--limit", "0"], "limit must be an integer from 1 to 1000. (given as"),
    (["history", "s1", "--cursor", "garbage"], "cursor is not a cursor this listing gave"),
    (["history", "s1", "--cursor", forged(["v", "1"])], "cursor is not a cursor"),
    (["sessions", "--cursor", forged(["s", ["a", 1]])], "cursor is not a cursor"),
    (["sessions", "--cursor", forged(["s", [1, "w", True, None]])], "cursor is not a cursor"),
    (["keys", "create", "../evil"], "'../evil' is not a valid user id"),
    (["keys", "revoke", "nope"], "No key with id 'nope'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["latest", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["install", "vim"], "argument AGENT: invalid choice"),
    (["latest", "--root", "/nonexistent"], "No memory folder at /nonexistent"),
    (["verify", "--root", "/nonexistent"], "No memory folder at /nonexistent"),
    (["history", "s1", "--root", "{file}"], "is not a folder"),
    (
        ["save", "--session-id", "x", "--root", "/nonexistent/.memory"],
        "/nonexistent does not exist",
    ),
    (["save", "--session-id", "x", "--root", "{broken}"], "Could not set up the memory folder"),
    (["latest", "--url", "http://127.0.0.1:9"], "--url needs an API key"),
    (
        ["latest", "--url", "localhost:8765", "--api-key", "k"],
        "base_url 'localhost:8765' must start",
    ),
    (["latest", "--url", "http://127.0.0.1:9", "--api-key", "k"], "Could not reach the sessionmem"),
]


@pytest.mark.parametrize(("args", "says"), MISTAKES, ids=[" ".join(a)[:60] for a, _ in MISTAKES])
def test_each_mistake_gets_one_error_line(
    where: dict[str, str], args: list[str], says: str
) -> None:
    argv = [a.format(**where) for a in args]
    if "--root" not in argv and "--url" not in argv and argv[0] not in ("serve", "frobnicate"):
        argv += ["--root", where["root"]]
    code, out, err = run_cli(*argv, env={"SESSIONMEM_USER": "alice"})
    assert code in (1, 2), (argv, code, out, err)
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert says in lines[0], err


def test_the_same_as_real_processes(where: dict[str, str]) -> None:
    """A few of them through the installed command, the way an agent's shell runs it."""
    env = {**os.environ, "SESSIONMEM_USER": "alice", "SESSIONMEM_ROOT": where["root"]}
    cases = [
        ["show", "s1", "--snapshot-id", "xyz"],
        ["diff", "s1", "\u00b2"],
        ["serve", "--port", "99999"],
        ["save", "--from-json", "/nonexistent.json"],
    ]
    for args in cases:
        ran = subprocess.run([*sessionmem_cmd(), *args], env=env, capture_output=True, text=True)
        assert ran.returncode in (1, 2) and ran.stdout == ""
        assert len(ran.stderr.splitlines()) == 1 and ran.stderr.startswith("Error: "), ran.stderr


def test_a_hook_for_an_unknown_agent_never_fails() -> None:
    code, out, err = run_cli("hook", "vim")
    assert code == 0 and out == "" and "unknown agent 'vim'" in err


def test_version_and_help() -> None:
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("sessionmem ")
    code, out, _ = run_cli("--help")
    assert code == 0 and "save" in out and "latest" in out and "<bool>" not in out
    code, out, _ = run_cli("diff", "--help")
    assert code == 0 and "SESSION [FROM] [TO]" in out


def test_reads_never_create_the_memory_folder(tmp_path: Path) -> None:
    for args in (["latest"], ["sessions"], ["history", "s"], ["verify"], ["show", "s"]):
        code, _, err = run_cli(*args, "--root", str(tmp_path / "none" / ".memory"))
        assert code == 1 and "No memory folder at" in err
    assert not (tmp_path / "none").exists()
