"""`sessionmem mcp` judged by a client we did not write: the MCP Inspector's CLI (a pinned
version, through npx; Node is on the machine image), listing the tools and calling each with
valid and with invalid arguments. An invalid call is a tool error (the Inspector exits 5) whose
text is one line in the library's words, starting with the tool's name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import ENGINES, sessionmem_cmd

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
TOOLS = {"save_checkpoint", "get_briefing", "get_snapshot", "get_history", "diff_snapshots",
         "list_sessions", "search_memory"}  # fmt: skip

pytestmark = pytest.mark.slow


WHERE: dict[Path, str] = {}  # a test's place -> SESSIONMEM_ROOT=… or SESSIONMEM_DATABASE=…


def _inspect(root: Path, *args: str) -> tuple[int, Any]:
    npx = shutil.which("npx")
    assert npx, "the MCP Inspector runs through npx (Node is on the machine image)"
    where = WHERE.get(root, f"SESSIONMEM_ROOT={root}")
    run = subprocess.run(
        [npx, "-y", INSPECTOR, "--cli",
         "-e", where, "-e", "SESSIONMEM_USER=dev", "-e", f"HOME={root.parent}",
         *sessionmem_cmd(), "mcp", *args],
        capture_output=True, text=True, timeout=300, cwd=root.parent,
        env={**os.environ, "npm_config_update_notifier": "false"},
    )  # fmt: skip
    try:
        return run.returncode, json.loads(run.stdout)
    except ValueError:
        return run.returncode, run.stdout + run.stderr


def _call(root: Path, tool: str, **args: Any) -> tuple[int, Any]:
    flags = []
    for name, value in args.items():
        flags += [
            "--tool-arg",
            f"{name}={json.dumps(value) if not isinstance(value, str) else value}",
        ]
    return _inspect(root, "--method", "tools/call", "--tool-name", tool, *flags)


@pytest.mark.parametrize("engine", ["files-durable", "postgres"])
def test_the_inspector_lists_and_calls_every_tool(tmp_path: Path, engine: str) -> None:
    """Judged by a client we did not write, on the memory folder and on a database."""
    root = tmp_path / ".memory"
    store = ENGINES[engine](root)
    if engine == "postgres":
        WHERE[root] = f"SESSIONMEM_DATABASE={store.url}"
    code, listed = _inspect(root, "--method", "tools/list")
    assert code == 0, listed
    assert {t["name"] for t in listed["tools"]} == TOOLS
    valid = [
        ("save_checkpoint", {"session_id": "s1", "tasks": ["Write the parser"]}),
        ("save_checkpoint", {"session_id": "s1", "decisions": ["Use tomllib"]}),
        ("get_briefing", {}),
        ("get_snapshot", {"session_id": "s1"}),
        ("get_history", {"session_id": "s1", "limit": 5}),
        ("diff_snapshots", {"session_id": "s1"}),
        ("list_sessions", {}),
        ("search_memory", {"query": "parser"}),
    ]
    for tool, args in valid:
        code, out = _call(root, tool, **args)
        assert code == 0 and not out.get("isError"), (tool, out)
    briefing = _call(root, "get_briefing")[1]["content"][0]["text"]
    assert "- Write the parser" in briefing and "- Use tomllib" in briefing
    invalid = [
        ("save_checkpoint", {"session_id": "s1", "open_tasks": ["T"]}, "no argument"),
        ("save_checkpoint", {"session_id": "bad id", "tasks": ["T"]}, "session_id must be"),
        ("get_briefing", {"verbose": True}, "no argument 'verbose'"),
        ("get_snapshot", {"session_id": "s1", "version": 9}, "there is no version 9"),
        ("get_history", {"session_id": "s1", "limit": 0}, "limit must be an integer from 1"),
        ("diff_snapshots", {"session_id": "nope"}, "No session 'nope'"),
        ("list_sessions", {"event": "lunch"}, "event must be one of"),
        ("search_memory", {"query": '"unbalanced'}, "unbalanced quote"),
    ]
    for tool, args, words in invalid:
        code, out = _call(root, tool, **args)
        assert code == 5 and out["isError"], (tool, out)
        text = out["content"][0]["text"]
        assert text.startswith(f"{tool}: ") and words in text and "\n" not in text, (tool, text)
