"""What the hooks capture (docs/decisions.md, "What the hooks capture"): real Claude Code
transcripts (data/transcripts, with their notice), compactions built by hand in the documented
format, incremental reading, and the compaction hand-over through the real hook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import transcripts as t
from sessionmem import Store
from sessionmem.errors import NotFound
from sessionmem.integrations.incremental import read_transcript
from sessionmem.integrations.transcript import parse_transcript
from sessionmem.render import BRIEFING_LIMIT, briefing

from conftest import DATA, run_hook, sessionmem_cmd
from helpers import commit_all, new_repo

REAL = DATA / "transcripts" / "claude"
FIRST_LIST = [
    "Review current session tracking implementation",
    "Search ~/.claude folders for /clear command patterns",
]


# --- real transcripts ---------------------------------------------------------------------


def _prefix(path: Path, lines: int, into: Path) -> Path:
    into.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:lines]))
    return into


@pytest.mark.parametrize(
    ("upto", "tasks", "doing"),
    [
        (9, 5, "Review current session tracking implementation"),  # the first TodoWrite
        (60, 3, "Analyze session file timestamps to understand boundaries"),
        (111, 0, None),  # every item completed
        (158, 1, "Create final implementation plan"),
        (None, 0, None),  # the whole transcript: its last list is all done
    ],
)
def test_the_real_todowrite_lists_give_their_open_tasks(
    tmp_path: Path, upto: int | None, tasks: int, doing: str | None
) -> None:
    source = REAL / "session-196820da.jsonl"
    path = source if upto is None else _prefix(source, upto, tmp_path / "t.jsonl")
    p = parse_transcript(path, "/Users/user/repo")
    assert p.tasks_source == "todo"
    assert len(p.open_tasks) == tasks
    if doing is None:
        assert p.in_progress == []
    else:
        assert [x[: len(doing)] for x in p.in_progress] == [doing]
        assert p.open_tasks[0].startswith(doing)  # the item in progress is open
    if upto == 9:
        assert [x[: len(f)] for x, f in zip(p.open_tasks, FIRST_LIST, strict=False)] == FIRST_LIST
    assert len(p.commands_run) <= 50 and p.skipped == 0


def test_the_real_sub_agent_transcript_has_no_task_list(tmp_path: Path) -> None:
    p = parse_transcript(REAL / "session-9eda1058.jsonl", "/Users/user/repo")
    assert p.files_modified == ["available-tools.md"]
    assert (p.open_tasks, p.tasks_source, p.key_decisions) == ([], None, [])


def test_the_real_incremental_pair_reads_the_same_in_two_steps_as_whole(tmp_path: Path) -> None:
    live = tmp_path / "live.jsonl"
    state = tmp_path / "state"
    shutil.copy(REAL / "incremental-turn-1.jsonl", live)
    first, how = read_transcript(live, "/Users/User/repo", state)
    assert how == "whole"
    shutil.copy(REAL / "incremental-turn-2.jsonl", live)  # the same file, grown by one turn
    second, how = read_transcript(live, "/Users/User/repo", state)
    assert how == f"from byte {(REAL / 'incremental-turn-1.jsonl').stat().st_size}"
    whole = parse_transcript(REAL / "incremental-turn-2.jsonl", "/Users/User/repo")
    assert second == whole
    assert second.lines == first.lines + 25
    again, how = read_transcript(live, "/Users/User/repo", state)
    assert (again, how) == (whole, "unchanged")


# --- compactions ----------------------------------------------------------------------------

SOLVING = ("Keyed the buckets on the API key, not the IP, to stop double counting.",)
DECISIONS = [
    "Keyed the buckets on the API key, not the IP, to stop double counting.",
    "ImportError for redis in CI: Fixed by making the backend optional.",
    "A token bucket, chosen instead of a fixed window to allow bursts",
]


def _lines_before() -> list[dict]:
    return [
        t.user("add rate limiting"),
        t.tool(
            "Edit", {"file_path": "/w/app/src/app/limits.py", "old_string": "a", "new_string": "b"}
        ),
        t.tool("Bash", {"command": "pytest -q", "description": "tests"}),
        t.todos(("Write the bucket", "completed"), ("Wire the middleware", "in_progress")),
    ]


def test_one_compaction_hands_over_its_tasks_work_next_step_and_decisions(tmp_path: Path) -> None:
    lines = _lines_before() + t.compaction(
        t.summary(
            ["Task #3: Document the limits in README (IN PROGRESS)", "Benchmark the limiter"],
            "Writing the README section on limits.",
            "Finish the README limits table.",
            solving=SOLVING,
        )
    )
    p = parse_transcript(t.write(tmp_path / "t.jsonl", lines), "/w/app")
    assert p.open_tasks == [
        "Task #3: Document the limits in README (IN PROGRESS)",
        "Benchmark the limiter",
    ]
    assert p.tasks_source == "summary"
    assert p.in_progress == ["Task #3: Document the limits in README (IN PROGRESS)"]
    assert p.current_work == "Writing the README section on limits."
    assert p.next_step == "Finish the README limits table."
    assert p.key_decisions == DECISIONS
    assert p.decision_sources == ["summary"] * 3
    assert (p.compactions, p.compacted_at) == (1, lines[-2]["timestamp"])
    assert p.files_modified == ["src/app/limits.py"] and p.commands_run == ["pytest -q"]


def test_the_newest_of_two_summaries_gives_the_tasks_and_both_give_decisions(
    tmp_path: Path,
) -> None:
    lines = (
        _lines_before()
        + t.compaction(t.summary(["Old task"], "Old work.", "Old step.", solving=SOLVING))
        + [t.tool("Bash", {"command": "pytest -q -k limits"})]
        + t.compaction(
            t.summary(
                [],
                "Nothing left; reviewing.",
                "Ask the user for review.",
                solving=("Moved the limiter out of the health endpoint.",),
            )  # fmt: skip
        )
    )
    p = parse_transcript(t.write(tmp_path / "t.jsonl", lines), "/w/app")
    assert p.open_tasks == [] and p.tasks_source == "summary"  # "None." is no task
    assert (p.current_work, p.next_step) == ("Nothing left; reviewing.", "Ask the user for review.")
    assert p.key_decisions == [*DECISIONS, "Moved the limiter out of the health endpoint."]
    assert p.compactions == 2


def test_a_todo_list_newer_than_the_summary_wins(tmp_path: Path) -> None:
    lines = (
        _lines_before()
        + t.compaction(t.summary(["Document the limits", "Benchmark"], "Docs.", "Finish docs."))
        + [t.todos(("Document the limits", "completed"), ("Benchmark", "in_progress"))]
    )
    p = parse_transcript(t.write(tmp_path / "t.jsonl", lines), "/w/app")
    assert (p.open_tasks, p.tasks_source, p.in_progress) == (["Benchmark"], "todo", ["Benchmark"])
    assert p.next_step == "Finish docs."  # still the newest summary's


def test_tasks_closed_after_the_summary_are_not_open(tmp_path: Path) -> None:
    lines = [
        *_lines_before()[:3],
        t.tool("TaskCreate", {"subject": "Document the limits"}, "toolu_c1"),
        t.result("toolu_c1", "Task #1 created", extra={"task": {"id": "1"}}),
        t.tool("TaskCreate", {"subject": "Benchmark the limiter"}, "toolu_c2"),
        t.result("toolu_c2", "Task #2 created"),
        *t.compaction(
            t.summary(["Document the limits", "Benchmark the limiter"], "Docs.", "Docs.")
        ),
        t.tool("TaskUpdate", {"taskId": "1", "status": "completed"}),
        t.tool("TaskUpdate", {"taskId": "2", "status": "in_progress"}),
    ]
    p = parse_transcript(t.write(tmp_path / "t.jsonl", lines), "/w/app")
    assert (p.open_tasks, p.tasks_source) == (["Benchmark the limiter"], "tasks")
    assert p.in_progress == ["Benchmark the limiter"]


def test_a_plan_gives_open_tasks_until_a_newer_list_and_a_rejected_plan_none(
    tmp_path: Path,
) -> None:
    plan = (
        "# Plan: limits\n\n## Context\nWhy.\n\n## Steps\n"
        "1. Write the bucket\n   - with tests\n2. Wire it\n3. Document it\n"
    )
    lines = [*_lines_before(), t.tool("ExitPlanMode", {"plan": plan}, "toolu_plan")]
    p = parse_transcript(t.write(tmp_path / "a.jsonl", lines), "/w/app")
    assert (p.open_tasks, p.tasks_source) == (
        ["Write the bucket: with tests", "Wire it", "Document it"],
        "plan",
    )
    newer = [*lines, t.todos(("Wire it", "pending"))]
    p = parse_transcript(t.write(tmp_path / "b.jsonl", newer), "/w/app")
    assert (p.open_tasks, p.tasks_source) == (["Wire it"], "todo")
    rejected = [*lines, t.result("toolu_plan", "The user doesn't want to proceed", error=True)]
    p = parse_transcript(t.write(tmp_path / "c.jsonl", rejected), "/w/app")
    assert p.tasks_source == "todo"  # back to the list before the plan
    assert p.open_tasks == ["Wire the middleware"]


def test_a_continued_session_names_its_parent(tmp_path: Path) -> None:
    lines = [t.user("earlier work", session="parent-1"), t.user("go on", session=t.SESSION)]
    p = parse_transcript(t.write(tmp_path / "t.jsonl", lines), "/w/app")
    assert p.parent_session == "parent-1"


# --- incremental reading --------------------------------------------------------------------


def test_a_transcript_changed_before_the_offset_or_shrunk_is_read_whole(tmp_path: Path) -> None:
    path = t.write(tmp_path / "t.jsonl", _lines_before())
    state = tmp_path / "state"
    assert read_transcript(path, "/w/app", state)[1] == "whole"
    with open(path, "a") as f:
        f.write(json.dumps(t.tool("Bash", {"command": "ruff check"})) + "\n")
        f.write('{"type": "assistant", "message": {"content": [')  # still being written
    grown, how = read_transcript(path, "/w/app", state)
    assert how.startswith("from byte") and grown.commands_run == ["pytest -q", "ruff check"]
    assert grown.skipped == 0  # the half-written line waits for the next call
    # an edit in place before the offset (same size): read whole again
    data = path.read_bytes().replace(b"pytest -q", b"pytest -x")
    path.write_bytes(data)
    edited, how = read_transcript(path, "/w/app", state)
    assert how == "whole" and edited.commands_run == ["pytest -x", "ruff check"]
    # shrunk (rewritten shorter): read whole again
    t.write(path, _lines_before()[:2])
    short, how = read_transcript(path, "/w/app", state)
    assert how == "whole" and short.commands_run == []
    # a damaged state file: read whole, no error
    for kept in state.iterdir():
        kept.write_text('{"state": {"v": 1, "seen": 5}, "offset": 3, "ino": 0}')
    assert read_transcript(path, "/w/app", state)[0] == parse_transcript(path, "/w/app")


# --- the briefing ------------------------------------------------------------------------------


def test_the_briefing_stays_under_the_limit_and_keeps_file_names(tmp_path: Path) -> None:
    store = Store(tmp_path / ".memory")
    deep = "/".join(f"folder{i}" for i in range(40)) + "/the_file_that_matters.py"
    snap = store.save(
        "u",
        {
            "session_id": "s",
            "open_tasks": [f"task {i} " + "x" * 400 for i in range(200)],
            "key_decisions": ["d" * 500] * 3,
            "files_modified": [deep],
            "current_work": "w" * 5000,
            "next_step": "Next.",
            "metadata": {"in_progress": ["task 0 " + "x" * 400]},
        },
    )
    text = briefing(snap)
    assert len(text) <= BRIEFING_LIMIT < 10_000
    assert "the_file_that_matters.py" in text and "folder0/…/" in text
    assert text.index("## Current work") < text.index("## Next step") < text.index("## Open tasks")
    assert "- **(in progress)** task 0" in text


# --- the hook, end to end -------------------------------------------------------------------


_hook = run_hook


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict]:
    repo = new_repo(tmp_path / "app")
    (repo / "README.md").write_text("app\n")
    commit_all(repo, "start")
    env = {**os.environ, "SESSIONMEM_USER": "dev", "CLAUDE_PROJECT_DIR": str(repo)}
    env.pop("SESSIONMEM_ROOT", None)
    return repo, env


def test_session_start_after_a_compaction_stores_the_hand_over_and_prints_it(
    repo, tmp_path
) -> None:
    repo, env = repo
    transcript = tmp_path / "t.jsonl"
    t.write(transcript, _lines_before())
    base = {"session_id": t.SESSION, "transcript_path": str(transcript), "cwd": str(repo)}
    assert (
        _hook({**base, "hook_event_name": "PreCompact", "trigger": "auto"}, repo, env).returncode
        == 0
    )
    store = Store(repo / ".memory")
    pre = store.get("dev", t.SESSION)
    assert pre.event == "pre_compact" and pre.open_tasks == ["Wire the middleware"]
    # the compaction happens; the transcript now ends with the summary
    pending = ["Task #3: Document the limits (IN PROGRESS)", "Benchmark the limiter"]
    lines = _lines_before() + t.compaction(
        t.summary(pending, "Docs.", "Finish the docs.", solving=SOLVING)
    )
    t.write(transcript, lines)
    start = _hook({**base, "hook_event_name": "SessionStart", "source": "compact"}, repo, env)
    assert start.returncode == 0
    stored = store.get("dev", t.SESSION)
    assert (stored.version, stored.event) == (2, "checkpoint")
    assert stored.open_tasks == pending
    data = stored.session_data
    assert (data["current_work"], data["next_step"]) == ("Docs.", "Finish the docs.")
    meta = data["metadata"]
    assert meta["sources"]["open_tasks"] == ["summary", "summary"]
    assert meta["compaction"] == {
        "count": 1,
        "at": lines[-2]["timestamp"],
        "after": {"snapshot_id": pre.snapshot_id, "version": 1},
    }
    out = start.stdout
    assert out.startswith(f"# Session memory: {t.SESSION} (version 2)\n")
    assert "After compaction 1" in out and "version 1" in out
    assert "## Next step\nFinish the docs." in out
    assert (
        "- **(in progress)** Task #3: Document the limits (IN PROGRESS)\n- Benchmark the limiter"
        in out
    )
    # a later Stop after one more turn: read from where the last call stopped, lineage carried
    with open(transcript, "a") as f:
        f.write(json.dumps(t.tool("Bash", {"command": "make docs"})) + "\n")
    stop = _hook({**base, "hook_event_name": "Stop"}, repo, env)
    assert stop.returncode == 0 and stop.stdout == ""
    later = store.get("dev", t.SESSION)
    assert later.session_data["metadata"]["compaction"]["after"]["version"] == 1
    assert later.session_data["commands_run"][-1] == "make docs"
    # a turn of plain conversation: the next Stop finds nothing new and stores nothing
    with open(transcript, "a") as f:
        f.write(json.dumps(t.user("thanks, looks good")) + "\n")
    assert _hook({**base, "hook_event_name": "Stop"}, repo, env).returncode == 0
    assert store.get("dev", t.SESSION).version == later.version
    log = (repo / ".memory" / ".local" / "hooks.log").read_text()
    assert "read the transcript from byte" in log
    # (the user's new words alone are no new work: docs/decisions.md, "Never empty, never
    # repeated" — found before the store is even loaded)
    assert log.rstrip().endswith(
        "nothing new in the transcript since the last save: nothing stored"
    )


def test_without_a_transcript_the_hook_stores_no_empty_snapshot_and_says_so(repo, tmp_path) -> None:
    repo, env = repo
    other = tmp_path / "other.jsonl"  # another session's transcript nearby: never read
    t.write(other, _lines_before())
    for payload in ({}, {"transcript_path": str(tmp_path / "gone.jsonl")}):
        run = _hook(
            {"session_id": "s1", "cwd": str(repo), "hook_event_name": "PreCompact", **payload},
            repo,
            env,
        )
        assert run.returncode == 0
    with pytest.raises(NotFound):  # the payload alone holds no work: nothing hides the useful
        Store(repo / ".memory").get("dev", "s1")
    log = (repo / ".memory" / ".local" / "hooks.log").read_text()
    assert "no transcript_path in the payload" in log and "cannot read the transcript" in log
    assert log.count("nothing to record for s1 (pre_compact): nothing stored") == 2


def test_history_shows_the_compaction_chain_and_the_continued_session(tmp_path: Path) -> None:
    root = tmp_path / ".memory"
    store = Store(root)
    meta = {"parent_session": "parent-1"}
    store.save("u", {"session_id": "s", "event": "checkpoint", "metadata": meta})
    store.save("u", {"session_id": "s", "event": "pre_compact", "metadata": meta})
    store.save("u", {"session_id": "s", "event": "checkpoint", "metadata": meta})
    run = subprocess.run(
        [*sessionmem_cmd(), "history", "s", "--root", str(root), "--user", "u"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    events = [line.split()[2] if line.split()[0].isdigit() else line.strip() for line in lines[1:]]
    assert events[:4] == ["checkpoint", "── compacted ──", "pre_compact", "checkpoint"]
    assert lines[-1] == "continues session parent-1 (sessionmem history parent-1)"
