"""Codex CLI, Gemini CLI and Cursor (docs/decisions.md, "Other agents"): their transcripts read by
the same rules as Claude Code's (real ones from data/transcripts, with their notice, and edge
cases by hand), their hooks run end to end as the installed command in a git repository, and
their installers on existing files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sessionmem import Store
from sessionmem.integrations.agents import READERS, CodexReader, patch_files
from sessionmem.integrations.incremental import read_transcript
from sessionmem.integrations.transcript import parse_transcript

from conftest import DATA, run_hook, sessionmem_cmd

CODEX = DATA / "transcripts" / "codex"
GEMINI = DATA / "transcripts" / "gemini" / "session-2025-12-01T21-45-5b959dae.json"
ROLLOUT = next(CODEX.glob("rollout-*.jsonl"))


# --- Codex ----------------------------------------------------------------------------------


def test_the_real_codex_rollout() -> None:
    p = parse_transcript(ROLLOUT, "/Users/Sample_User/repos/codemie-ai/codemie-code", CodexReader)
    assert p.files_modified == [
        "src/agents/plugins/__tests__/codemie-code-reasoning.test.ts",
        "src/agents/plugins/codemie-code.plugin.ts",
        "src/agents/plugins/opencode/opencode.plugin.ts",
    ]
    assert len(p.commands_run) == 43  # every exec_command (write_stdin feeds one, it runs none)
    assert p.commands_run[4] == "git status --short"
    assert (p.open_tasks, p.tasks_source, p.in_progress) == (
        ["Run focused verification"],
        "todo",
        ["Run focused verification"],
    )  # the newest update_plan: two steps completed, one in progress
    assert p.git_branch == "feat/codex-agent-plugin" and p.skipped == 0


def test_the_real_codex_turns_read_incrementally_as_whole(tmp_path: Path) -> None:
    live, state = tmp_path / "rollout.jsonl", tmp_path / "state"
    shutil.copy(CODEX / "turn-1.jsonl", live)
    read_transcript(live, "/home/user/project", state, CodexReader)
    shutil.copy(CODEX / "turn-2.jsonl", live)
    second, how = read_transcript(live, "/home/user/project", state, CodexReader)
    assert how.startswith("from byte")
    assert second == parse_transcript(CODEX / "turn-2.jsonl", "/home/user/project", CodexReader)
    assert second.git_branch == "main" and second.lines == 25


def _codex(kind: str, payload: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return {"timestamp": f"2026-05-12T10:00:{n:02d}.000Z", "type": kind, "payload": payload}


SHELL = ["bash", "-lc", "make test"]
ADD = "*** Add File: /w/app/docs/x.md\n"


def test_codex_edge_cases_patches_shells_unknown_records_and_a_torn_line(tmp_path: Path) -> None:
    patch = (
        "*** Begin Patch\n*** Add File: src/new.py\n+x = 1\n*** Delete File: src/old.py\n"
        "*** Update File: src/a.py\n*** Move to: src/b.py\n@@\n-a\n+b\n*** End Patch\n"
    )
    assert patch_files(patch) == ["src/new.py", "src/old.py", "src/a.py", "src/b.py"]
    lines = [
        _codex("session_meta", {"id": "c1", "cwd": "/w/app", "git": {"branch": "dev"}}),
        _codex("something_new", {"type": "whatever"}),
        _codex("response_item", {"type": "custom_tool_call", "name": "apply_patch",
                                 "call_id": "p1", "input": patch}, 1),
        _codex("response_item", {"type": "function_call", "name": "shell", "call_id": "s1",
                                 "arguments": json.dumps({"command": SHELL})}, 2),
        _codex("response_item", {"type": "function_call", "name": "apply_patch", "call_id": "p2",
                                 "arguments": json.dumps({"input": ADD})}, 3),
        _codex("response_item", {"type": "message", "role": "assistant", "id": "m1",
                                 "content": [{"type": "output_text",
                                              "text": "Decision: keep the old API for now"}]}, 4),
        _codex("compacted", {"message": "summary"}, 5),
    ]  # fmt: skip
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"timestamp": "2026-05-1')
    p = parse_transcript(path, "/w/app", CodexReader)
    assert p.files_modified == ["src/new.py", "src/old.py", "src/a.py", "src/b.py", "docs/x.md"]
    assert p.commands_run == ["make test"]
    assert p.key_decisions == ["keep the old API for now"]
    assert (p.compactions, p.git_branch, p.skipped) == (1, "dev", 1)


# --- Gemini CLI ------------------------------------------------------------------------------


def test_the_real_gemini_session_in_its_older_single_json_format(tmp_path: Path) -> None:
    p = parse_transcript(GEMINI, "/Users/Jane_Smith/Documents/projects/epm-cdme", READERS["gemini"])
    assert p.files_modified == ["assistants/lead_gemini.txt"]  # write_file, then replace
    assert p.commands_run == [] and p.open_tasks == []
    # read as the hook reads it: whole each time (the file is rewritten), never an error
    state = tmp_path / "state"
    again, how = read_transcript(GEMINI, "/Users/Jane_Smith/Documents/projects/epm-cdme", state,
                                 READERS["gemini"])  # fmt: skip
    assert (again, how) == (p, "whole")


def test_gemini_jsonl_sessions_and_failed_calls(tmp_path: Path) -> None:
    records = [
        {"sessionId": "g1", "projectHash": "h", "startTime": "2026-01-01T00:00:00Z"},
        {"id": "u1", "type": "user", "content": "fix the build"},
        {"id": "g2", "type": "gemini", "content": "Decision: pin the compiler",
         "toolCalls": [
             {"id": "t1", "name": "run_shell_command", "args": {"command": "make"},
              "status": "success"},
             {"id": "t2", "name": "write_file", "args": {"file_path": "/w/app/Makefile"},
              "status": "success"},
             {"id": "t3", "name": "replace", "args": {"file_path": "/w/app/never.txt"},
              "status": "cancelled"},
         ]},
        {"id": "g3", "type": "gemini", "content": "", "toolCalls": [
            {"id": "t4", "name": "write_todos", "args": {"todos": [
                {"description": "ship it", "status": "in_progress"},
                {"description": "done", "status": "completed"}]}}]},
    ]  # fmt: skip
    path = tmp_path / "session.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    p = parse_transcript(path, "/w/app", READERS["gemini"])
    assert p.files_modified == ["Makefile"] and p.commands_run == ["make"]
    assert p.key_decisions == ["pin the compiler"]
    assert (p.open_tasks, p.in_progress) == (["ship it"], ["ship it"])


# --- Cursor ----------------------------------------------------------------------------------


def test_cursor_transcripts_name_files_by_path(tmp_path: Path) -> None:
    def use(name: str, data: dict[str, Any], n: int) -> dict[str, Any]:
        block = {"type": "tool_use", "id": f"c{n}", "name": name, "input": data}
        return {"role": "assistant", "message": {"content": [block]}}

    lines = [
        {"role": "user", "message": {"content": [{"type": "text", "text": "go"}]}},
        use("Write", {"path": "/w/app/a.py", "contents": "x"}, 1),
        use("StrReplace", {"path": "/w/app/b.py", "old_string": "a", "new_string": "b"}, 2),
        use("Shell", {"command": "pytest -q"}, 3),
        {"role": "assistant",
         "message": {"content": [{"type": "text", "text": "Decision: b.py owns parsing"}]}},
    ]  # fmt: skip
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    p = parse_transcript(path, "/w/app", READERS["cursor"])
    assert (p.files_modified, p.commands_run) == (["a.py", "b.py"], ["pytest -q"])
    assert p.key_decisions == ["b.py owns parsing"]


# --- the hooks, end to end -----------------------------------------------------------------------


def _hook(agent: str, payload: dict[str, Any], repo: Path, env: dict[str, str]) -> str:
    run = run_hook(payload, repo, env, agent)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_codex_hooks_checkpoint_on_stop_and_brief_at_start(repo, tmp_path: Path) -> None:
    repo, env = repo
    rollout = tmp_path / "rollout.jsonl"
    rollout.write_text(
        ROLLOUT.read_text().replace("/Users/Sample_User/repos/codemie-ai/codemie-code", str(repo))
    )
    base = {"session_id": "cx-1", "turn_id": "t", "cwd": str(repo), "model": "gpt-5",
            "transcript_path": str(rollout)}  # fmt: skip
    assert (
        _hook("codex", {**base, "hook_event_name": "Stop", "stop_hook_active": False}, repo, env)
        == ""
    )
    snap = Store(repo / ".memory").get("dev", "cx-1")
    assert snap.event == "checkpoint" and snap.session_data["metadata"]["agent"] == "codex"
    assert snap.session_data["project_path"] == str(repo)
    assert "src/agents/plugins/codemie-code.plugin.ts" in snap.session_data["files_modified"]
    assert snap.open_tasks == ["Run focused verification"]
    # a null transcript (--ephemeral): nothing guessed, the hook still exits 0 quietly
    assert (
        _hook(
            "codex", {**base, "transcript_path": None, "hook_event_name": "PreCompact"}, repo, env
        )
        == ""
    )
    # ...and stores nothing new: the payload alone holds what version 1 holds
    assert "cx-1 unchanged since version 1" in (repo / ".memory/.local/hooks.log").read_text()
    start = _hook("codex", {**base, "session_id": "cx-2", "hook_event_name": "SessionStart",
                            "source": "startup"}, repo, env)  # fmt: skip
    assert start.startswith("# Session memory: cx-1 (version 1)")


def test_gemini_hooks_print_only_json(repo, tmp_path: Path) -> None:
    repo, env = repo
    session = tmp_path / "session.json"
    session.write_text(
        GEMINI.read_text().replace("/Users/Jane_Smith/Documents/projects/epm-cdme", str(repo))
    )
    base = {"session_id": "gm-1", "cwd": str(repo), "transcript_path": str(session),
            "timestamp": "2026-12-01T00:00:00Z"}  # fmt: skip
    env = {**env, "GEMINI_PROJECT_DIR": str(repo)}
    assert (
        _hook("gemini", {**base, "hook_event_name": "SessionEnd", "reason": "exit"}, repo, env)
        == ""
    )
    snap = Store(repo / ".memory").get("dev", "gm-1")
    assert snap.event == "session_end" and snap.session_data["files_modified"] == [
        "assistants/lead_gemini.txt"
    ]
    out = _hook("gemini", {**base, "session_id": "gm-2", "hook_event_name": "SessionStart",
                           "source": "startup"}, repo, env)  # fmt: skip
    context = json.loads(out)["hookSpecificOutput"]["additionalContext"]
    assert context.startswith("# Session memory: gm-1 (version 1)")


def test_cursor_hooks_without_a_transcript_use_their_per_event_records(repo) -> None:
    repo, env = repo
    base = {"conversation_id": "cu-1", "generation_id": "g", "model": "m", "cursor_version": "2",
            "workspace_roots": [str(repo)], "user_email": "dev@example.com",
            "transcript_path": None}  # fmt: skip
    for payload in (
        {
            "hook_event_name": "afterFileEdit",
            "file_path": str(repo / "src" / "app.py"),
            "edits": [],
        },
        {"hook_event_name": "afterShellExecution", "command": "npm test", "output": "ok"},
    ):
        assert json.loads(_hook("cursor", {**base, **payload}, repo, env)) == {}
    assert json.loads(_hook("cursor", {**base, "hook_event_name": "stop", "status": "completed",
                                       "loop_count": 0}, repo, env)) == {}  # fmt: skip
    snap = Store(repo / ".memory").get("dev", "cu-1")
    data = snap.session_data
    assert (data["files_modified"], data["commands_run"]) == (["src/app.py"], ["npm test"])
    assert data["metadata"]["agent"] == "cursor"
    out = json.loads(_hook("cursor", {**base, "conversation_id": "cu-2",
                                      "hook_event_name": "sessionStart"}, repo, env))  # fmt: skip
    assert out["additional_context"].startswith("# Session memory: cu-1")


# --- installers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "file", "existing", "events"),
    [
        ("codex", ".codex/hooks.json",
         {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify"}]}]}, "x": 1},
         ["SessionStart", "PreCompact", "Stop"]),
        ("gemini", ".gemini/settings.json",
         {"theme": "dark",
          "hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "x"}]}]}},
         ["SessionStart", "PreCompress", "SessionEnd", "AfterAgent"]),
        ("cursor", ".cursor/hooks.json",
         {"version": 1, "hooks": {"stop": [{"command": "./audit.sh"}]}},
         ["sessionStart", "preCompact", "sessionEnd", "stop", "afterFileEdit",
          "afterShellExecution"]),
    ],
)  # fmt: skip
def test_installers_merge_are_idempotent_and_remove_exactly_theirs(
    repo, agent: str, file: str, existing: dict[str, Any], events: list[str]
) -> None:
    repo, env = repo
    path = repo / file
    path.parent.mkdir()
    path.write_text(json.dumps(existing))

    def cli(*args: str) -> str:
        run = subprocess.run([*sessionmem_cmd(), "install", agent, *args], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert run.returncode == 0, run.stderr
        return run.stdout

    assert cli().startswith(f"Added to {path}: {', '.join(events)}")
    first = json.loads(path.read_text())
    for key, value in existing.items():
        if key != "hooks":
            assert first[key] == value
    ours = json.dumps(first["hooks"])
    assert ours.count(f" hook {agent}") == len(events)
    for event, handlers in existing["hooks"].items():  # theirs still there, first
        assert json.dumps(handlers[0]) in json.dumps(first["hooks"][event])
    command = next(
        h["command"] if "command" in h else h["hooks"][0]["command"]
        for h in first["hooks"][events[0]]
        if " hook " in json.dumps(h)
    )
    assert Path(command.split(" hook ")[0].split()[-1]).is_absolute() or "python" in command
    assert "nothing to do" in cli()
    assert json.loads(path.read_text()) == first
    assert cli("--uninstall").startswith(f"Removed from {path}")
    assert json.loads(path.read_text()) == existing


def test_sessions_and_latest_filter_by_agent_on_every_surface(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from sessionmem.http.app import create_app
    from sessionmem.keys import KeyRing

    root = tmp_path / ".memory"
    store = Store(root)
    for sid, agent in (("a", "claude-code"), ("b", "codex"), ("c", "gemini"), ("d", None)):
        body: dict[str, Any] = {"session_id": sid, "project_path": "/w/app"}
        if agent:
            body["metadata"] = {"agent": agent}
        store.save("dev", body)
    assert [s.session_id for s in store.sessions("dev", agent="codex").items] == ["b"]
    assert store.latest("dev", agent="claude-code").session_id == "a"
    key = KeyRing(store.layout).create("dev")[1]
    with TestClient(create_app(store)) as http:
        base = "/api/v1/public/memory/v2"
        got = http.get(f"{base}/sessions", params={"agent": "gemini"}, headers={"x-api-key": key})
        assert [s["session_id"] for s in got.json()["items"]] == ["c"]
        latest = http.get(f"{base}/session/latest", params={"agent": "codex"},
                          headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert latest.json()["session_id"] == "b"
    run = subprocess.run(
        [*sessionmem_cmd(), "sessions", "--agent", "codex", "--json", "--root", str(root),
         "--user", "dev"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert [s["session_id"] for s in json.loads(run.stdout)["items"]] == ["b"]
