"""The restore briefing (issue 5): open tasks first, always under the agent's 10,000 characters."""

from __future__ import annotations

from sessionmem.codec import ts_to_ms
from sessionmem.model import Snapshot
from sessionmem.render import BRIEFING_LIMIT, briefing, relative_time

TS = "2026-11-25T20:15:49.123Z"


def snap(**data: object) -> Snapshot:
    base = {
        "project_path": "/w/app",
        "files_modified": [],
        "commands_run": [],
        "key_decisions": [],
        "open_tasks": [],
        "event": "pre_compact",
    }
    return Snapshot(
        "s1", 3, "0193b7d2-0000-7000-8000-000000000001", "pre_compact", TS, {**base, **data}
    )


def test_briefing_exact() -> None:
    text = briefing(
        snap(
            open_tasks=["write tests"],
            key_decisions=["use tomllib"],
            files_modified=["src/a.py"],
            commands_run=["pytest -q"],
            git_branch="main",
            git_commit="abcdef1234567890",
        ),
        warnings=["recorded on branch `main`; you are on `dev`."],
        now_ms=ts_to_ms(TS) + 3 * 3600_000,
    )
    assert text == (
        "# Session memory: s1 (version 3)\n"
        "Saved 3 hours ago (2026-11-25 20:15 UTC) at pre_compact.\n"
        "In project `/w/app`, branch `main`, commit `abcdef123456`.\n"
        "> Warning: recorded on branch `main`; you are on `dev`.\n"
        "\n"
        "## Open tasks\n- write tests\n\n"
        "## Key decisions\n- use tomllib\n\n"
        "## Files modified\n- src/a.py\n\n"
        "## Recent commands\n- pytest -q\n"
    )


def test_huge_lists_are_cut_with_counts() -> None:
    long = "x" * 400
    text = briefing(
        snap(
            open_tasks=[f"task {i} {long}" for i in range(3000)],
            key_decisions=[f"decision {i} {long}" for i in range(3000)],
            files_modified=[f"f{i}.py" for i in range(5000)],
            commands_run=[f"cmd {i}" for i in range(5000)],
        )
    )
    assert len(text) <= BRIEFING_LIMIT < 10_000
    assert text.index("## Open tasks") < text.index("## Key decisions")
    assert "not shown" in text
    assert "- task 0 " in text  # open tasks: the first ones
    assert "- cmd 4999" in text  # commands: the most recent ones


def test_relative_time() -> None:
    now = ts_to_ms(TS)
    assert relative_time(TS, now) == "just now"
    assert relative_time(TS, now + 61_000) == "1 minute ago"
    assert relative_time(TS, now + 2 * 86_400_000) == "2 days ago"
