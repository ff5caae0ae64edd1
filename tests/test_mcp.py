"""`sessionmem mcp`, driven by the MCP SDK's own client (`ClientSession`) over stdio, as an agent
would: tools and resources listed, a save read back through every tool and through the HTTP
API, errors as tool errors, a missing memory folder."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from sessionmem import Store

from conftest import sessionmem_cmd
from helpers import commit_all, new_repo

TOOLS = {
    "save_checkpoint",
    "get_briefing",
    "get_snapshot",
    "get_history",
    "diff_snapshots",
    "list_sessions",
}


def _drive(cwd: Path, env: dict[str, str], body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    cmd = sessionmem_cmd()
    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], "mcp"], env=env, cwd=cwd)

    async def main() -> Any:
        with open(os.devnull, "w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await body(session)

    return anyio.run(main)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = new_repo(tmp_path / "app")
    (repo / "README.md").write_text("app\n")
    commit_all(repo, "start")
    env = {"SESSIONMEM_USER": "dev", "PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return repo, env


def _data(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def test_tools_and_resources_save_read_history_diff_and_errors(repo) -> None:
    repo, env = repo

    async def body(s: ClientSession) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["tools"] = (await s.list_tools()).tools
        out["empty"] = await s.call_tool("get_briefing", {})
        out["no_session"] = await s.call_tool("save_checkpoint", {"decisions": ["x"]})
        out["first"] = _data(
            await s.call_tool(
                "save_checkpoint",
                {
                    "session_id": "s1",
                    "decisions": ["Use SQLite for the index"],
                    "tasks": ["A", "B"],
                },
            )
        )
        out["second"] = _data(
            await s.call_tool(
                "save_checkpoint",
                {"session_id": "s1", "done": ["A"], "files": ["src/x.py"], "commands": ["make"]},
            )
        )
        out["got"] = _data(await s.call_tool("get_snapshot", {"session_id": "s1"}))
        out["v1"] = _data(await s.call_tool("get_snapshot", {"session_id": "s1", "version": 1}))
        out["history"] = _data(await s.call_tool("get_history", {"session_id": "s1"}))
        out["diff"] = _data(await s.call_tool("diff_snapshots", {"session_id": "s1"}))
        out["sessions"] = _data(await s.call_tool("list_sessions", {}))
        out["briefing"] = await s.call_tool("get_briefing", {})
        out["bad_version"] = await s.call_tool("get_snapshot", {"session_id": "s1", "version": 0})
        out["missing"] = await s.call_tool("get_snapshot", {"session_id": "nope"})
        out["bad_id"] = await s.call_tool("get_snapshot", {"session_id": "bad id!"})
        out["resources"] = (await s.list_resources()).resources
        out["templates"] = (await s.list_resource_templates()).resource_templates
        out["res_brief"] = await s.read_resource("sessionmem://briefing")
        out["res_session"] = await s.read_resource("sessionmem://session/s1")
        return out

    out = _drive(repo, env, body)
    tools = {t.name: t for t in out["tools"]}
    assert set(tools) == TOOLS
    for tool in tools.values():  # every tool tells an agent what it does and takes
        assert tool.description and len(tool.description) > 60
        assert tool.input_schema["type"] == "object"
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description"), (tool.name, name)
    assert out["empty"].content[0].text == "" if out["empty"].content else True
    assert (
        out["no_session"].is_error and "session_id is required" in out["no_session"].content[0].text
    )
    assert out["first"]["version"] == 1 and out["first"]["session_data"]["open_tasks"] == ["A", "B"]
    second = out["second"]["session_data"]
    assert out["second"]["version"] == 2 and second["open_tasks"] == ["B"]
    assert second["key_decisions"] == ["Use SQLite for the index"]  # merged, not replaced
    assert second["files_modified"] == ["src/x.py"] and second["commands_run"] == ["make"]
    assert second["project_path"] == str(repo)
    assert out["got"] == out["second"] and out["v1"] == out["first"]
    assert [e["version"] for e in out["history"]["items"]] == [2, 1]
    assert out["diff"]["removed"]["open_tasks"] == ["A"]
    assert [x["session_id"] for x in out["sessions"]["items"]] == ["s1"]
    text = out["briefing"].content[0].text
    assert text.startswith("# Session memory: s1 (version 2)") and "- B" in text
    for bad, words in (
        ("bad_version", "greater than or equal to 1"),
        ("missing", "No session 'nope'"),
        ("bad_id", "session_id"),
    ):
        assert out[bad].is_error, bad
        assert words in out[bad].content[0].text, (bad, out[bad].content[0].text)
    assert [str(r.uri) for r in out["resources"]] == ["sessionmem://briefing"]
    assert [t.uri_template for t in out["templates"]] == ["sessionmem://session/{session_id}"]
    assert out["res_brief"].contents[0].text == text
    assert json.loads(out["res_session"].contents[0].text) == out["second"]
    # the same snapshot through the library (and so through HTTP, which serves it byte for byte)
    stored = Store(repo / ".memory").get("dev", "s1")
    assert json.loads(stored.json()) == out["second"]


def test_a_missing_memory_folder_is_a_tool_error_until_a_save_makes_it(tmp_path: Path) -> None:
    folder = tmp_path / "nothing"
    folder.mkdir()
    env = {"SESSIONMEM_USER": "dev", "PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    async def body(s: ClientSession) -> tuple[Any, Any, Any]:
        read = await s.call_tool("list_sessions", {})
        saved = await s.call_tool("save_checkpoint", {"session_id": "s", "tasks": ["T"]})
        again = await s.call_tool("list_sessions", {})
        return read, saved, again

    read, saved, again = _drive(folder, env, body)
    assert read.is_error and "No memory folder" in read.content[0].text
    assert not saved.is_error and (folder / ".memory" / "log" / "dev").is_dir()
    assert [x["session_id"] for x in again.structured_content["items"]] == ["s"]


def test_time_to_the_first_tool_answer(repo) -> None:
    """Recorded for the closing note (no timing assertion: these machines are noisy)."""
    repo, env = repo
    start = time.perf_counter()

    async def body(s: ClientSession) -> Any:
        return await s.call_tool("list_sessions", {})

    result = _drive(repo, env, body)
    elapsed = time.perf_counter() - start
    assert not result.is_error
    print(f"\nsessionmem mcp: process start to first tool answer {1000 * elapsed:.0f} ms")
