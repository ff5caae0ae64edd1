"""Claude Code integration (issue 5): transcripts parsed exactly, the hook end to end as a
subprocess in a real git repository, and the installer on existing settings files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sessionmem import Store
from sessionmem.integrations.install import install, uninstall
from sessionmem.integrations.transcript import parse_transcript

from conftest import DATA, run_hook, sessionmem_cmd
from helpers import commit_all, git, new_repo

TODO = DATA / "claude" / "todowrite.jsonl"
TASKS = DATA / "claude" / "tasks.jsonl"
SESSION = "5f0c2a1e-7d3b-4c55-9a0e-2b1f3c4d5e6f"


def test_todowrite_transcript() -> None:
    p = parse_transcript(TODO, "/w/app")
    assert p.files_modified == ["src/config.py", "src/main.py", "/tmp/scratch.txt"]
    assert p.commands_run == [
        "pytest tests/test_config.py -q",
        'sessionmem save --merge --decision "Config errors name the line number"',
        "pytest tests/test_config.py -q",
    ]
    assert p.open_tasks == [
        "Add tests for the config parser",
        "Update the docs",
        "Handle env overrides",
    ]
    assert p.key_decisions == [
        "Use tomllib for parsing, no new dependency.",
        "Config errors name the line number",
        "Keep config loading lazy",
    ]
    assert p.git_branch == "main"
    assert (p.lines, p.skipped) == (16, 0)


def test_task_tools_transcript_with_compaction_and_a_truncated_last_line() -> None:
    p = parse_transcript(TASKS, "/w/nb")
    assert p.files_modified == ["analysis.ipynb", "plots.py"]
    assert p.commands_run == ["python -m pytest tests\\test_plots.py", "ruff check plots.py"]
    assert p.open_tasks == ["Fix the axis labels and units", "Add a legend to every figure"]
    assert p.key_decisions == ["plots.py owns all figure styling."]
    assert p.git_branch == "feature/plots"
    assert p.skipped == 1  # the truncated last line


def test_a_missing_transcript_is_an_empty_result(tmp_path: Path) -> None:
    p = parse_transcript(tmp_path / "nope.jsonl")
    assert p.files_modified == [] and p.lines == 0


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict]:
    repo = new_repo(tmp_path / "app")
    (repo / "src").mkdir()
    (repo / "src" / "config.py").write_text("x = 1\n")
    commit_all(repo, "code")
    env = {**os.environ, "SESSIONMEM_USER": "dev", "CLAUDE_PROJECT_DIR": str(repo)}
    env.pop("SESSIONMEM_ROOT", None)
    # the transcript of a session in this repo
    transcript = tmp_path / "t.jsonl"
    transcript.write_text(TODO.read_text().replace("/w/app", str(repo)))
    return repo, {"env": env, "transcript": str(transcript)}


def test_hook_end_to_end(project) -> None:
    repo, ctx = project
    env = ctx["env"]
    base = {"session_id": SESSION, "transcript_path": ctx["transcript"], "cwd": str(repo)}
    start = run_hook({**base, "hook_event_name": "SessionStart", "source": "startup"}, repo, env)
    assert start.returncode == 0 and start.stdout == ""  # nothing stored yet: nothing printed
    pre = run_hook(
        {**base, "hook_event_name": "PreCompact", "trigger": "auto", "custom_instructions": None},
        repo,
        env,
    )
    assert pre.returncode == 0 and pre.stdout == ""
    store = Store(repo / ".memory")
    snap = store.get("dev", SESSION)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert snap.event == "pre_compact"
    assert snap.session_data["git_branch"] == "main"
    assert snap.session_data["git_commit"] == head
    assert snap.session_data["files_modified"] == [
        "src/config.py",
        "src/main.py",
        "/tmp/scratch.txt",
    ]
    assert snap.open_tasks[0] == "Add tests for the config parser"
    # the agent's context was compacted; the next SessionStart (source compact) first stores a
    # checkpoint of what the transcript now holds — here the same as the pre_compact snapshot,
    # so nothing new is stored — then restores it
    resume = run_hook({**base, "hook_event_name": "SessionStart", "source": "compact"}, repo, env)
    assert resume.returncode == 0
    out = resume.stdout
    assert out.startswith(f"# Session memory: {SESSION} (version 1)\n")
    assert store.get("dev", SESSION).event == "pre_compact"
    tasks = "- **(in progress)** Add tests for the config parser\n- Update the docs"
    assert "## Open tasks\n_Stated in the todo list at 2026-06-15 10:00 UTC._\n" + tasks in out
    assert "## Key decisions\n- Use tomllib for parsing, no new dependency.\n" in out
    assert len(out) < 10_000 and not out.lstrip().startswith("{")
    assert (repo / ".memory" / ".local" / "last-briefing.md").read_text() == out
    # files it lists change in a later commit: the briefing says it is stale
    (repo / "src" / "config.py").write_text("x = 2\n")
    commit_all(repo, "change config")
    stale = run_hook({**base, "hook_event_name": "SessionStart", "source": "startup"}, repo, env)
    assert "files it lists changed in commits since: `src/config.py`" in stale.stdout
    # a decision recorded with the CLI during the session is carried into the next snapshot
    rec = subprocess.run(
        [*sessionmem_cmd(), "save", "--merge", "--decision", "Ship on Friday"],
        cwd=repo / "src",
        env=env,
        capture_output=True,
        text=True,
    )
    assert rec.returncode == 0, rec.stderr
    end = run_hook(
        {**base, "hook_event_name": "SessionEnd", "reason": "prompt_input_exit"}, repo, env
    )
    assert end.returncode == 0 and end.stdout == ""
    history = store.history("dev", SESSION).items
    assert [(e.version, e.event) for e in history] == [
        (2, "checkpoint"),  # the CLI's save --merge --decision (SessionEnd found nothing new)
        (1, "pre_compact"),
    ]
    final = store.get("dev", SESSION)
    assert "Ship on Friday" in final.session_data["key_decisions"]
    sources = final.session_data["metadata"]["sources"]["key_decisions"]
    assert sources[final.session_data["key_decisions"].index("Ship on Friday")] == "save"
    assert final.session_data["key_decisions"][0] == "Use tomllib for parsing, no new dependency."
    log = (repo / ".memory" / ".local" / "hooks.log").read_text()
    assert "saved" in log and "restored" in log


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'{"hook_event_name": 5}',
        b'{"hook_event_name": "PreCompact", "session_id": "bad id"}',
        b'{"hook_event_name": "SessionEnd", "session_id": "s", "transcript_path": "/nonexistent"}',
    ],
)
def test_hook_always_exits_zero_and_prints_nothing_decision_like(project, payload: bytes) -> None:
    repo, ctx = project
    out = subprocess.run(
        [*sessionmem_cmd(), "hook", "claude-code"],
        input=payload,
        cwd=repo,
        env=ctx["env"],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert out.stdout == b""


def test_hook_import_path_has_no_web_stack(tmp_path: Path) -> None:
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'fastapi', 'uvicorn', 'starlette', 'typer', 'rich', 'httpx', 'pydantic'}), "
        "file=sys.stderr))\n"
        "sys.argv = ['sessionmem', 'hook', 'claude-code']\n"
        "from sessionmem.entry import main\n"
        "main()\n"
    )
    out = subprocess.run(
        [os.sys.executable, "-c", code], input="{}", capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0
    assert out.stderr.strip().splitlines()[-1] == "[]"


# --- the installer ------------------------------------------------------------------------

EXISTING = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm test)"]},
    "hooks": {
        "PreCompact": [{"hooks": [{"type": "command", "command": "./backup.sh"}]}],
        "PostToolUse": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "fmt"}]}],
    },
}


def test_install_merges_keeps_everything_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps(EXISTING))
    assert install(path) == ["PreCompact", "SessionStart", "SessionEnd"]
    first = json.loads(path.read_text())
    assert first["model"] == "opus" and first["permissions"] == EXISTING["permissions"]
    assert first["hooks"]["PostToolUse"] == EXISTING["hooks"]["PostToolUse"]
    assert first["hooks"]["PreCompact"][0] == EXISTING["hooks"]["PreCompact"][0]
    assert first["hooks"]["PreCompact"][1] == {
        "hooks": [{"type": "command", "command": "sessionmem hook claude-code", "timeout": 30}]
    }
    assert first["hooks"]["SessionStart"] == [
        {
            "matcher": "startup|resume|clear|compact",
            "hooks": [{"type": "command", "command": "sessionmem hook claude-code", "timeout": 15}],
        }
    ]
    assert first["hooks"]["SessionEnd"][0]["hooks"][0]["timeout"] == 10
    assert install(path) == []
    assert json.loads(path.read_text()) == first
    assert uninstall(path) == ["PreCompact", "SessionEnd", "SessionStart"]
    assert json.loads(path.read_text()) == EXISTING
    assert uninstall(path) == []


def test_install_into_a_new_file_and_uninstall_leaves_it_empty(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.local.json"
    install(path, stop=True)
    assert set(json.loads(path.read_text())["hooks"]) == {
        "PreCompact",
        "SessionStart",
        "SessionEnd",
        "Stop",
    }
    uninstall(path)
    assert json.loads(path.read_text()) == {}


def test_install_refuses_a_broken_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    with pytest.raises(Exception, match="not valid JSON"):
        install(path)
    assert path.read_text() == "{not json"


def test_installed_hooks_run_with_a_minimal_path(project) -> None:
    """`install` writes a command that works whatever PATH the agent runs hooks with: run it
    exactly as Claude Code would (`sh -c COMMAND`) with PATH=/usr/bin:/bin."""
    repo, ctx = project
    env = {k: v for k, v in ctx["env"].items() if k != "CLAUDE_PROJECT_DIR"}
    out = subprocess.run(
        [*sessionmem_cmd(), "install", "claude-code", "--scope", "local"],
        cwd=repo / "src",  # the git top level is the project
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    settings = repo / ".claude" / "settings.local.json"
    first = out.stdout.splitlines()[0]
    assert first.startswith(f"Added to {settings}: PreCompact, SessionStart, SessionEnd (running ")
    command = json.loads(settings.read_text())["hooks"]["PreCompact"][0]["hooks"][0]["command"]
    assert command.endswith(" hook claude-code") and command.startswith("/")
    assert out.stdout.splitlines()[-1].startswith("When you make an important decision")
    minimal = {"PATH": "/usr/bin:/bin", "HOME": str(repo), "SESSIONMEM_USER": "dev",
               "CLAUDE_PROJECT_DIR": str(repo)}  # fmt: skip
    payload = {
        "session_id": SESSION,
        "transcript_path": ctx["transcript"],
        "cwd": str(repo),
        "hook_event_name": "PreCompact",
        "trigger": "auto",
    }
    ran = subprocess.run(
        ["/bin/sh", "-c", command], input=json.dumps(payload), env=minimal, cwd=repo,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert Store(repo / ".memory").get("dev", SESSION).event == "pre_compact"
    start = subprocess.run(
        ["/bin/sh", "-c", command],
        input=json.dumps({**payload, "hook_event_name": "SessionStart", "source": "startup"}),
        env=minimal, cwd=repo, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert start.stdout.startswith(f"# Session memory: {SESSION} (version 1)")
    # again: nothing to do; from another install path: the command is updated, not doubled
    again = subprocess.run(
        [*sessionmem_cmd(), "install", "claude-code", "--scope", "local"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert "already has sessionmem's hooks" in again.stdout
    moved = subprocess.run(
        [*sessionmem_cmd(), "install", "claude-code", "--scope", "local", "--command",
         "/opt/new/sessionmem hook claude-code"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert moved.returncode == 0
    hooks = json.loads(settings.read_text())["hooks"]
    assert [h["command"] for g in hooks["PreCompact"] for h in g["hooks"]] == [
        "/opt/new/sessionmem hook claude-code"
    ]
    gone = subprocess.run(
        [*sessionmem_cmd(), "install", "claude-code", "--scope", "local", "--uninstall"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert gone.returncode == 0 and "hooks" not in json.loads(settings.read_text())


def test_items_holding_a_secret_are_not_added_again_on_every_save(project) -> None:
    """The previous snapshot holds `[REDACTED]` where the transcript holds the secret: the
    hook compares them masked alike, so each save keeps one copy."""
    repo, ctx = project
    env = ctx["env"]
    secret = "sk-ant-api03-" + "A" * 40
    transcript = Path(ctx["transcript"])
    text = transcript.read_text()
    text = text.replace(
        "pytest tests/test_config.py -q", f"curl -H 'x-api-key: {secret}' https://api.example.com"
    )
    text = text.replace("Keep config loading lazy", f"Keep config loading lazy, rotate {secret}")
    transcript.write_text(text)
    base = {"session_id": SESSION, "transcript_path": str(transcript), "cwd": str(repo)}
    for event in ("PreCompact", "Stop", "Stop", "SessionEnd"):
        assert run_hook({**base, "hook_event_name": event}, repo, env).returncode == 0
    data = Store(repo / ".memory").get("dev", SESSION).session_data
    assert secret not in str(data)
    curl = "curl -H 'x-api-key: [REDACTED]' https://api.example.com"
    # the transcript ran it twice; each save keeps those two, not two more
    assert data["commands_run"].count(curl) == 2, data["commands_run"]
    assert [d for d in data["key_decisions"] if "[REDACTED]" in d] == [
        "Keep config loading lazy, rotate [REDACTED]"
    ]
