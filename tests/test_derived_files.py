"""Nothing derived holds what the log would not (docs/decisions.md, "Nothing derived holds more
than the log"): every agent's hooks run on transcripts full of credentials — in commands, the
user's words, task lists and decisions — then every byte of every file under `.memory/` (the
logs, the reader's state, Cursor's event records, hooks.log, the briefing file, the projection
cache, the search index) is searched for each secret."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from test_redact import corpus

from conftest import run_hook, sessionmem_cmd

SECRETS = corpus("positives")


def _tokens() -> list[str]:
    """The random-looking runs of the corpus: what must never be found."""
    found: set[str] = set()
    for line in SECRETS:
        for run in re.findall(r"[A-Za-z0-9_/+=-]{12,}", line):
            if re.search(r"\d", run) and re.search(r"[A-Z]", run) and re.search(r"[a-z]", run):
                found.add(run)
    return sorted(found)


def _claude(path: Path) -> None:
    lines: list[dict[str, Any]] = []
    for n, secret in enumerate(SECRETS):
        lines.append(
            {
                "type": "user",
                "uuid": f"u{n}",
                "sessionId": "c1",
                "message": {"role": "user", "content": f"please run {secret}"},
            }
        )
        block = {"type": "tool_use", "id": f"t{n}", "name": "Bash", "input": {"command": secret}}
        lines.append(
            {
                "type": "assistant",
                "uuid": f"a{n}",
                "sessionId": "c1",
                "message": {
                    "id": f"m{n}",
                    "content": [block, {"type": "text", "text": f"Decision: keep {secret} out"}],
                },
            }
        )
    todos = [{"content": f"rotate {s}", "status": "pending", "activeForm": "x"} for s in SECRETS]
    lines.append(
        {
            "type": "assistant",
            "uuid": "todo",
            "sessionId": "c1",
            "message": {
                "id": "mt",
                "content": [
                    {"type": "tool_use", "id": "tt", "name": "TodoWrite", "input": {"todos": todos}}
                ],
            },
        }
    )
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))  # fmt: skip


def _codex(path: Path) -> None:
    lines: list[dict[str, Any]] = [{"type": "session_meta", "payload": {"id": "x1"}}]
    for n, secret in enumerate(SECRETS):
        lines.append(
            {"type": "event_msg", "payload": {"type": "user_message", "message": f"run {secret}"}}
        )
        lines.append(
            {
                "type": "response_item",
                "payload": {
                    "type": "function_call",
                    "name": "exec_command",
                    "call_id": f"c{n}",
                    "arguments": json.dumps({"cmd": secret}),
                },
            }
        )
    plan = [{"step": f"rotate {s}", "status": "pending"} for s in SECRETS]
    lines.append(
        {
            "type": "response_item",
            "payload": {
                "type": "function_call",
                "name": "update_plan",
                "call_id": "plan",
                "arguments": json.dumps({"plan": plan}),
            },
        }
    )
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))  # fmt: skip


def _gemini(path: Path) -> None:
    messages: list[dict[str, Any]] = []
    for n, secret in enumerate(SECRETS):
        messages.append({"id": f"u{n}", "type": "user", "content": f"run {secret}"})
        messages.append(
            {
                "id": f"g{n}",
                "type": "gemini",
                "content": f"Decision: hide {secret}",
                "toolCalls": [
                    {
                        "id": f"t{n}",
                        "name": "run_shell_command",
                        "status": "success",
                        "args": {"command": secret},
                    }
                ],
            }
        )
    path.write_text(json.dumps({"sessionId": "g1", "messages": messages}))  # fmt: skip


def _cursor(path: Path) -> None:
    lines = []
    for n, secret in enumerate(SECRETS):
        lines.append(
            {
                "role": "user",
                "message": {
                    "content": [{"type": "text", "text": f"<user_query>run {secret}</user_query>"}]
                },
            }
        )
        lines.append(
            {
                "role": "assistant",
                "message": {
                    "content": [
                        {
                            "type": "tool_use",
                            "id": f"t{n}",
                            "name": "Shell",
                            "input": {"command": secret},
                        }
                    ]
                },
            }
        )
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))  # fmt: skip


def test_no_file_under_memory_holds_a_secret(repo, tmp_path: Path) -> None:
    repo, env = repo
    runs: list[tuple[str, str, list[str]]] = [
        ("claude-code", "c1", ["SessionStart", "PreCompact", "Stop", "SessionEnd"]),
        ("codex", "x1", ["SessionStart", "PreCompact", "Stop"]),
        ("gemini", "g1", ["SessionStart", "AfterAgent", "PreCompress", "SessionEnd"]),
        ("cursor", "u1", ["sessionStart", "preCompact", "stop", "sessionEnd"]),
    ]
    writers = {"claude-code": _claude, "codex": _codex, "gemini": _gemini, "cursor": _cursor}
    for agent, session, events in runs:
        transcript = tmp_path / f"{agent}.jsonl"
        writers[agent](transcript)
        base = {"session_id": session, "cwd": str(repo), "transcript_path": str(transcript)}
        if agent == "cursor":  # its per-event hooks record commands when it has no transcript
            for secret in SECRETS:
                event = {
                    "conversation_id": "u2",
                    "workspace_roots": [str(repo)],
                    "hook_event_name": "afterShellExecution",
                    "command": secret,
                }
                assert run_hook(event, repo, env, agent).returncode == 0
            end = {
                "conversation_id": "u2",
                "workspace_roots": [str(repo)],
                "hook_event_name": "stop",
            }
            assert run_hook(end, repo, env, agent).returncode == 0
        for event in events:
            payload = {**base, "hook_event_name": event, "source": "startup"}
            ran = run_hook(payload, repo, env, agent)
            assert ran.returncode == 0, ran.stderr
    # the search index and the briefing are derived too
    for argv in (["search", "rotate"], ["brief"]):
        subprocess.run([*sessionmem_cmd(), *argv], cwd=repo, env=env, capture_output=True)
    files = [p for p in (repo / ".memory").rglob("*") if p.is_file()]
    assert any(".local/transcripts" in str(p) for p in files)  # the reader's state was kept
    assert any(".local/events" in str(p) for p in files)  # and Cursor's event records
    assert any(p.suffix == ".sqlite" for p in files)  # and the search index
    leaks = {
        (str(p.relative_to(repo)), token)
        for p in files
        for token in _tokens()
        if token.encode() in p.read_bytes()
    }
    assert not leaks, sorted(leaks)[:10]


@pytest.mark.parametrize("secret", SECRETS[:3])
def test_the_reader_state_is_masked_like_the_log(repo, tmp_path: Path, secret: str) -> None:
    repo, env = repo
    transcript = tmp_path / "t.jsonl"
    block = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": secret}}
    transcript.write_text(
        json.dumps(
            {"type": "assistant", "sessionId": "s", "message": {"id": "m", "content": [block]}}
        )
        + "\n"
    )
    payload = {"session_id": "s", "cwd": str(repo), "transcript_path": str(transcript),
               "hook_event_name": "PreCompact"}  # fmt: skip
    assert run_hook(payload, repo, env).returncode == 0
    (state,) = (repo / ".memory" / ".local" / "transcripts").glob("*.json")
    kept = json.loads(state.read_text())["state"]["commands"]
    assert kept and "[REDACTED]" in kept[0]


def test_home_is_written_as_tilde_only_where_a_path_starts(monkeypatch) -> None:
    from sessionmem.integrations.record import tilde

    monkeypatch.setenv("HOME", "/root")
    assert tilde("cat /root/.ssh/config && cd /root") == "cat ~/.ssh/config && cd ~"
    for kept in ("mysql://root:pw@db/shop", "/rootfs/x", "/home/root/x", "a/root/b"):
        assert tilde(kept) == kept
