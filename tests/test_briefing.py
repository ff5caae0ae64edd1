"""The briefing a new session gets (docs/decisions.md, "The briefing", "Never empty, never
repeated", "Where the hooks write"): never hidden by an empty session, unfinished work carried
forward until closed, the user's requests first, each part dated, few commands — on the real
transcripts in data/transcripts (with their notice) and on hand-made lines where the real ones
hold no such case."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import transcripts as t
from sessionmem import Client, Store
from sessionmem.http.app import PREFIX
from sessionmem.integrations.agents import READERS
from sessionmem.integrations.handover import read_summary
from sessionmem.integrations.transcript import parse_transcript
from sessionmem.project import ProjectView

from conftest import DATA, run_hook, sessionmem_cmd
from helpers import commit_all, git

REAL = DATA / "transcripts"
CLAUDE = REAL / "claude" / "session-196820da.jsonl"
CLAUDE_PLAN = REAL / "claude" / "session-9eda1058.jsonl"
CODEX = next((REAL / "codex").glob("rollout-*.jsonl"))
CODEX_CHAT = REAL / "codex" / "turn-1.jsonl"
GEMINI = REAL / "gemini" / "session-2025-12-01T21-45-5b959dae.json"
ANON = {  # the paths their publisher anonymised them to
    CLAUDE: "/Users/user/repos/codemie-ai/codemie-code",
    CLAUDE_PLAN: "/Users/user/repos/codemie-ai/codemie-code",
    CODEX: "/Users/Sample_User/repos/codemie-ai/codemie-code",
    GEMINI: "/Users/Jane_Smith/Documents/projects/epm-cdme",
}


def _copy(src: Path, dest: Path, repo: Path) -> Path:
    text = src.read_text()
    if src in ANON:
        text = text.replace(ANON[src], str(repo))
    dest.write_text(text)
    return dest


def _hook(repo: Path, env: dict[str, str], agent: str = "claude-code", **payload: Any) -> str:
    run = run_hook({"cwd": str(repo), **payload}, repo, env, agent)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _log(repo: Path) -> str:
    return (repo / ".memory" / ".local" / "hooks.log").read_text()


def _versions(repo: Path, session: str) -> int:
    return len(Store(repo / ".memory").history("dev", session).items)


# --- never empty, never hidden -------------------------------------------------------------------


def test_claude_useful_then_empty_then_new_start(repo, tmp_path: Path) -> None:
    repo, env = repo
    a = _copy(CLAUDE, tmp_path / "a.jsonl", repo)
    _hook(repo, env, session_id="A", transcript_path=str(a), hook_event_name="SessionEnd")
    # B: a quick question, no tool use — its Stop and SessionEnd find nothing to record
    b = t.write(tmp_path / "b.jsonl", [t.user("what does flock do?", session="B")])
    for event in ("Stop", "SessionEnd"):
        _hook(repo, env, session_id="B", transcript_path=str(b), hook_event_name=event)
    assert "nothing to record for B (session_end): nothing stored" in _log(repo)
    # ...and a hook whose transcript is missing stores no empty snapshot either
    _hook(repo, env, session_id="B2", transcript_path=str(tmp_path / "gone"),
          hook_event_name="SessionEnd")  # fmt: skip
    sessions = Store(repo / ".memory").sessions("dev").items
    assert [s.session_id for s in sessions] == ["A"]
    out = _hook(repo, env, session_id="C", hook_event_name="SessionStart", source="startup")
    assert out.startswith("# Session memory: A (version 1)\n")
    assert "## What the user asked\n- First: ultrathink there is logic that tracks files" in out
    assert "- Then: create document in /specs folder" in out


def test_a_later_empty_snapshot_never_replaces_the_useful_one(repo) -> None:
    """Saved by hand or by another tool: the newest snapshot holding work is the head."""
    repo, env = repo
    store = Store(repo / ".memory")
    store.save("dev", {"session_id": "A", "project_path": str(repo), "open_tasks": ["Ship it"]})
    store.save("dev", {"session_id": "B", "project_path": str(repo)})
    store.save("dev", {"session_id": "A2", "project_path": str(repo), "open_tasks": ["X"]})
    store.save("dev", {"session_id": "A2", "project_path": str(repo)})  # emptied later
    view = store.project("dev", str(repo))
    assert (view.head.session_id, view.head.version) == ("A2", 1)
    assert [i.text for i in view.open_tasks] == ["X", "Ship it"]


def test_codex_useful_then_plain_chat_then_new_start(repo, tmp_path: Path) -> None:
    repo, env = repo
    a = _copy(CODEX, tmp_path / "a.jsonl", repo)
    _hook(repo, env, "codex", session_id="cx-A", transcript_path=str(a), hook_event_name="Stop")
    chat = _copy(CODEX_CHAT, tmp_path / "b.jsonl", repo)
    _hook(repo, env, "codex", session_id="cx-B", transcript_path=str(chat), hook_event_name="Stop")
    assert "nothing to record for cx-B (checkpoint)" in _log(repo)
    out = _hook(repo, env, "codex", session_id="cx-C", hook_event_name="SessionStart",
                source="startup")  # fmt: skip
    assert out.startswith("# Session memory: cx-A (version 1)\n")
    assert "- **(in progress)** Run focused verification" in out
    assert "- First: show tools\n- Then: let's update the defailt context compart" in out


def test_identical_saves_store_one_version(repo, tmp_path: Path) -> None:
    """Gemini's AfterAgent, PreCompress and SessionEnd on an unchanged transcript."""
    repo, env = repo
    session = _copy(GEMINI, tmp_path / "g.json", repo)
    for event in ("AfterAgent", "PreCompress", "SessionEnd", "AfterAgent"):
        _hook(repo, env, "gemini", session_id="g1", transcript_path=str(session),
              hook_event_name=event)  # fmt: skip
    assert _versions(repo, "g1") == 1
    assert _log(repo).count("g1 unchanged since version 1") >= 2


# --- carried forward until closed ----------------------------------------------------------------


def _todo_session(path: Path, session: str, *items: tuple[str, str]) -> Path:
    return t.write(path, [t.user(f"work on {session}", session=session), t.todos(*items)])


def test_tasks_carry_forward_until_a_later_session_closes_them(repo, tmp_path: Path) -> None:
    repo, env = repo

    def end(session: str, *items: tuple[str, str]) -> None:
        path = _todo_session(tmp_path / f"{session}.jsonl", session, *items)
        _hook(
            repo, env, session_id=session, transcript_path=str(path), hook_event_name="SessionEnd"
        )

    end("A", ("Parse the config", "pending"), ("Write the docs", "pending"),
        ("Add a CLI flag", "in_progress"))  # fmt: skip
    # B finishes the parser and starts something new; it never mentions the other two
    end("B", ("Parse the config", "completed"), ("Benchmark the parser", "pending"))
    out = _hook(repo, env, session_id="C", hook_event_name="SessionStart", source="startup")
    assert out.startswith("# Session memory: B (version 1)")
    assert "## Open tasks\n_Stated in the todo list at" in out
    own = out.split("## Open tasks")[1].split("##")[0]
    assert "- Benchmark the parser" in own and "Parse the config" not in out
    carried = out.split("## Still open from earlier sessions\n")[1].split("\n\n")[0]
    assert carried.splitlines()[0].startswith("- Write the docs — _left by session A, ")
    assert "- Add a CLI flag — _left by session A" in carried
    # the user drops one from another session, by its text
    drop = subprocess.run(
        [*sessionmem_cmd(), "save", "--merge", "--session-id", "D", "--done", "Write the docs"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert drop.returncode == 0, drop.stderr
    brief = subprocess.run(
        [*sessionmem_cmd(), "brief", "--json"], cwd=repo, env=env, capture_output=True, text=True
    )
    view = json.loads(brief.stdout)
    assert [(i["text"], i["session_id"]) for i in view["open_tasks"]] == [
        ("Benchmark the parser", "B"),
        ("Add a CLI flag", "A"),
    ]
    assert view["open_tasks"][1]["in_progress"] is True
    # a task gone from a list that replaced it in the same session is closed too
    end("B", ("Benchmark the parser", "pending"), ("Profile it", "pending"))
    end("B", ("Profile it", "pending"))
    view = Store(repo / ".memory").project("dev", str(repo))
    assert [i.text for i in view.open_tasks] == ["Profile it", "Add a CLI flag"]


def test_other_branches_are_marked(repo, tmp_path: Path) -> None:
    repo, env = repo
    git(repo, "checkout", "-q", "-b", "feature")
    path = _todo_session(tmp_path / "f.jsonl", "F", ("Finish the feature", "pending"))
    _hook(repo, env, session_id="F", transcript_path=str(path), hook_event_name="SessionEnd")
    git(repo, "checkout", "-q", "main")
    path = _todo_session(tmp_path / "m.jsonl", "M", ("Fix main", "pending"))
    _hook(repo, env, session_id="M", transcript_path=str(path), hook_event_name="SessionEnd")
    out = _hook(repo, env, session_id="N", hook_event_name="SessionStart", source="startup")
    assert out.startswith("# Session memory: M ")
    assert "- Finish the feature — _left by session F, just now, on branch `feature`_" in out


def test_the_project_view_is_the_same_on_every_surface(store: Store, keys) -> None:
    from sessionmem.http.app import create_app

    store.save("alice", {"session_id": "a", "project_path": "/p", "open_tasks": ["t1", "t2"]})
    store.save("alice", {"session_id": "b", "project_path": "/p", "open_tasks": ["t3"],
                         "closed_tasks": ["t1"], "key_decisions": ["d"]})  # fmt: skip
    store.save("alice", {"session_id": "c", "project_path": "/q", "open_tasks": ["other"]})
    want = store.project("alice", "/p")
    assert [i.text for i in want.open_tasks] == ["t3", "t2"]
    with TestClient(create_app(store)) as http:
        got = Client(str(http.base_url), keys["alice"], http=http).project("/p")
        raw = http.get(f"{PREFIX}/project?project_path=/p", headers={"x-api-key": keys["alice"]})
        assert ProjectView.from_view(raw.json()).view() == want.view()
        http.headers["x-api-key"] = keys["bob"]
        bob = ProjectView.from_view(
            http.get(f"{PREFIX}/project", params={"project_path": "/p"}).json()
        )
    assert got.view() == want.view()
    assert bob.head is None and bob.open_tasks == []  # another user's memory is not there


# --- intent, age, noise ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "agent", "event", "first"),
    [
        (CLAUDE, "claude-code", "SessionEnd", "ultrathink there is logic that tracks files"),
        (CLAUDE_PLAN, "claude-code", "SessionEnd", "show tools and store response in file"),
        (CODEX, "codex", "Stop", "show tools"),
        (GEMINI, "gemini", "SessionEnd", "hi"),
    ],
)
def test_each_real_transcript_briefs_with_its_first_request(
    repo, tmp_path: Path, path: Path, agent: str, event: str, first: str
) -> None:
    repo, env = repo
    copy = _copy(path, tmp_path / path.name, repo)
    _hook(repo, env, agent, session_id="s", transcript_path=str(copy), hook_event_name=event)
    out = subprocess.run(
        [*sessionmem_cmd(), "brief"], cwd=repo, env=env, capture_output=True, text=True
    )
    if not Store(repo / ".memory").sessions("dev").items:  # a transcript holding no work
        assert out.returncode == 1 and "Nothing to brief on" in out.stderr
        return
    assert out.returncode == 0, out.stderr
    assert "## What the user asked\n" in out.stdout
    assert f": {first}" in out.stdout.split("## What the user asked\n")[1].splitlines()[0]
    commands = (
        out.stdout.split("## Recent commands")[1] if "## Recent commands" in out.stdout else ""
    )
    assert sum(1 for line in commands.splitlines() if line.startswith("- ")) <= 10
    assert len(out.stdout) < 10_000


def test_a_briefing_shows_ten_distinct_commands_and_files_relative(repo, tmp_path: Path) -> None:
    repo, env = repo
    copy = _copy(CLAUDE, tmp_path / "a.jsonl", repo)
    _hook(repo, env, session_id="A", transcript_path=str(copy), hook_event_name="SessionEnd")
    snap = Store(repo / ".memory").get("dev", "A")
    assert len(snap.session_data["commands_run"]) == 39  # the snapshot keeps them all
    out = _hook(repo, env, session_id="B", hook_event_name="SessionStart", source="startup")
    section = out.split("## Recent commands (the last 10 distinct of 39)\n")[1].split("\n\n")[0]
    assert len(section.splitlines()) == 10
    assert str(repo) not in out.split("## Files modified")[1].split("##")[0]


def test_each_part_says_when_it_was_stated_and_what_came_after(repo, tmp_path: Path) -> None:
    repo, env = repo
    summary = t.summary(["Task #2: Document the limits (IN PROGRESS)"], "Docs.", "Finish docs.")
    boilerplate = (
        "\n\nIf you need specific details from before compaction (like exact code snippets), "
        "read the full transcript at: /home/u/.claude/projects/x/abc.jsonl\n"
        "Please continue the conversation from where we left off without asking the user any "
        "further questions. Continue with the last task that you were asked to work on."
    )
    lines = [
        t.user("Add rate limiting to the API"),
        *t.compaction(summary + boilerplate),
        t.tool("Bash", {"command": "pytest -q"}),
        t.user("commit it"),
        t.tool("Bash", {"command": "git commit -am 'limits'"}),
        t.tool("Bash", {"command": "bd close limits-1"}),
    ]
    path = t.write(tmp_path / "t.jsonl", lines)
    _hook(repo, env, session_id=t.SESSION, transcript_path=str(path), hook_event_name="SessionEnd")
    snap = Store(repo / ".memory").get("dev", t.SESSION)
    assert snap.session_data["next_step"] == "Finish docs."  # no appended instruction
    stated = snap.session_data["metadata"]["stated"]["open_tasks"]
    assert stated["source"] == "summary" and stated["after"] == {
        "turns": 1,
        "commands": 3,
        "commits": 1,
    }
    out = _hook(repo, env, session_id="next", hook_event_name="SessionStart", source="startup")
    assert "the session went on for 1 turn, 3 commands, 1 commit after it: check it still" in out
    assert "Please continue the conversation" not in out and "abc.jsonl" not in out


def test_the_summary_boilerplate_is_no_content() -> None:
    text = t.summary([], "Docs.", "Finish the docs.") + (
        "\nPlease continue the conversation from where we left off without asking the user any "
        "further questions."
    )
    handover = read_summary(text)
    assert handover.next_step == "Finish the docs." and handover.request.startswith("Add rate")


def test_requests_leave_out_what_the_user_did_not_type(tmp_path: Path) -> None:
    lines = [
        t.user("<command-name>/clear</command-name>"),
        t.user("[Request interrupted by user for tool use]"),
        t.user("  Fix   the\nlogin bug <system-reminder>ignore</system-reminder> "),
        t.user("x" * 500),
        t.user("and the logout one"),
    ]
    p = parse_transcript(t.write(tmp_path / "t.jsonl", lines), "/w/app")
    assert p.requests[0] == "Fix the login bug"
    assert p.requests[1] == "x" * 299 + "…"
    assert p.requests[-1] == "and the logout one" and len(p.requests) == 3  # first + last three


def test_claude_titles_count_only_for_this_session(tmp_path: Path) -> None:
    own = t.user("hello")
    lines = [
        {"type": "summary", "summary": "Another conversation", "leafUuid": "not-here"},
        own,
        {"type": "summary", "summary": "Config parser work", "leafUuid": own["uuid"]},
    ]
    assert parse_transcript(t.write(tmp_path / "t.jsonl", lines), "/w").title == (
        "Config parser work"
    )
    real = parse_transcript(CLAUDE_PLAN, ANON[CLAUDE_PLAN], READERS["claude-code"])
    assert real.title is None  # its 16 titles name other conversations


# --- opt-in per repository, capture settings ---------------------------------------------------


def test_a_hook_in_a_repository_without_memory_leaves_its_tree_untouched(
    tmp_path: Path, private_store: Path
) -> None:
    repo = tmp_path / "other"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    commit_all(repo, "start")
    env = {**os.environ, "SESSIONMEM_USER": "dev"}
    env.pop("SESSIONMEM_ROOT", None)
    copy = _copy(CLAUDE, tmp_path / "a.jsonl", repo)
    for event in ("SessionStart", "PreCompact", "SessionEnd"):
        _hook(repo, env, session_id="A", transcript_path=str(copy), hook_event_name=event,
              source="startup")  # fmt: skip
    assert git(repo, "status", "--porcelain") == "" and not (repo / ".memory").exists()
    assert Store(private_store).get("dev", "A").session_data["project_path"] == str(repo)
    log = (private_store / ".local" / "hooks.log").read_text()
    assert f"in the per-user store {private_store}" in log
    out = _hook(repo, env, session_id="B", hook_event_name="SessionStart", source="startup")
    assert out.startswith("# Session memory: A (version 1)")
    status = subprocess.run(
        [*sessionmem_cmd(), "status", "--json"], cwd=repo, env=env, capture_output=True, text=True
    )
    report = json.loads(status.stdout)
    assert report["memory"] == {"root": str(private_store), "kind": "per-user store",
                                "exists": True, "user": "dev"}  # fmt: skip
    assert report["next_briefing"]["head"]["session_id"] == "A"
    assert any("saved A version 1" in line for line in report["last_runs"])


def test_capture_settings_keep_commands_out_and_write_home_as_tilde(repo, tmp_path: Path) -> None:
    repo, env = repo
    home = str(Path.home())
    lines = [
        t.user("go"),
        t.tool("Edit", {"file_path": f"{home}/notes/x.md"}),
        t.tool("Bash", {"command": f"cat {home}/.ssh/config"}),
    ]
    path = t.write(tmp_path / "t.jsonl", lines)
    _hook(repo, env, session_id="s", transcript_path=str(path), hook_event_name="SessionEnd")
    data = Store(repo / ".memory").get("dev", "s").session_data
    assert data["files_modified"] == ["~/notes/x.md"]
    assert data["commands_run"] == ["cat ~/.ssh/config"]
    (repo / ".memory" / "config.toml").write_text("[capture]\ncommands = false\n")
    lines.append(t.tool("Edit", {"file_path": "b.py"}))
    t.write(path, lines)
    _hook(repo, env, session_id="s", transcript_path=str(path), hook_event_name="SessionEnd")
    assert Store(repo / ".memory").get("dev", "s").session_data["commands_run"] == []
    (repo / ".memory" / "config.toml").write_text("[capture]\ncommand = false\n")
    _hook(repo, env, session_id="s", transcript_path=str(path), hook_event_name="SessionEnd")
    assert "[capture] has no setting 'command'" in _log(repo)


# --- wrong names refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["sesions"], "did you mean sessions?"),
        (["save", "--tsk", "x"], "did you mean --task?"),
        (["save", "--decison=x"], "did you mean --decision?"),
    ],
)
def test_the_cli_suggests_the_nearest_name(argv: list[str], hint: str) -> None:
    run = subprocess.run([*sessionmem_cmd(), *argv], capture_output=True, text=True)
    assert run.returncode == 2 and hint in run.stderr


def test_mcp_refuses_unknown_arguments(repo) -> None:
    from test_mcp import _drive

    repo, env = repo
    mcp_env = {"SESSIONMEM_USER": "dev", "PATH": os.environ["PATH"], "HOME": str(repo.parent)}

    async def body(s: Any) -> Any:
        wrong = await s.call_tool("save_checkpoint", {"session_id": "s", "open_tasks": ["T"]})
        made_up = await s.call_tool("get_briefing", {"verbose": True})
        return wrong, made_up

    wrong, made_up = _drive(repo, mcp_env, body)
    assert wrong.is_error and "no argument 'open_tasks'" in wrong.content[0].text
    assert "commands, decisions, done, files, replace, session_id, tasks" in wrong.content[0].text
    assert (
        made_up.is_error
        and "get_briefing: no argument 'verbose'" in made_up.content[0].text
        and "it takes: project_path" in made_up.content[0].text
    )
    with pytest.raises(Exception):  # noqa: B017 - nothing was stored
        Store(repo / ".memory").get("dev", "s")


def test_installers_say_what_the_agent_needs(repo) -> None:
    repo, env = repo
    run = subprocess.run(
        [*sessionmem_cmd(), "install", "codex"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0 and "codex needs: Codex runs a hook only once you trust it" in (
        run.stdout
    )
    status = subprocess.run(
        [*sessionmem_cmd(), "status"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert "codex        project  PreCompact, SessionStart, Stop — command resolves" in (
        status.stdout
    )
