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
    "search_memory",
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
        ("bad_version", "version must be a whole number from 1"),
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
    # (no .memory/ here: the per-user store under HOME, as the hooks would)
    private = tmp_path / ".local" / "share" / "sessionmem"
    assert not saved.is_error and (private / "log" / "dev").is_dir()
    assert not (folder / ".memory").exists()
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


# --- over HTTP, mounted in `sessionmem serve` -------------------------------------------------


def _drive_http(
    url: str, headers: dict[str, str], body: Callable[[ClientSession], Awaitable[Any]]
) -> Any:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> Any:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            streamable_http_client(url, http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            return await body(session)

    return anyio.run(main)


def test_the_same_tools_over_the_served_http_endpoint_with_a_key(tmp_path: Path, serve) -> None:
    from sessionmem.keys import KeyRing

    root = tmp_path / ".memory"
    store = Store(root)
    key = KeyRing(store.layout).create("alice")[1]
    other = KeyRing(store.layout).create("bob")[1]
    server = serve(root)
    url = server.base + "/mcp"

    async def body(s: ClientSession) -> dict[str, Any]:
        tools = {t.name for t in (await s.list_tools()).tools}
        saved = await s.call_tool(
            "save_checkpoint", {"session_id": "s1", "decisions": ["Bearer works"], "tasks": ["T"]}
        )
        again = await s.call_tool("save_checkpoint", {"session_id": "s1", "done": ["T"]})
        briefing = await s.call_tool("get_briefing", {})
        bad = await s.call_tool("get_history", {"session_id": "s1", "limit": 0})
        return {"tools": tools, "saved": saved, "again": again, "briefing": briefing, "bad": bad}

    out = _drive_http(url, {"x-api-key": key}, body)
    assert out["tools"] == TOOLS
    first, second = _data(out["saved"]), _data(out["again"])
    assert (first["version"], second["version"]) == (1, 2) and second["session_data"][
        "open_tasks"
    ] == []
    assert out["briefing"].content[0].text.startswith("# Session memory: s1 (version 2)")
    assert (
        out["bad"].is_error
        and "limit must be an integer from 1 to 1000" in out["bad"].content[0].text
    )
    # saved through MCP, read through the HTTP API: the same snapshot, with either header
    import httpx

    api = server.base + "/api/v1/public/memory/v2/session/s1"
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
        got = httpx.get(api, headers=headers, timeout=10)
        assert got.status_code == 200 and got.json() == second
    # a bearer key over MCP too, and it is another user's memory for another key
    seen = _drive_http(
        url, {"Authorization": f"Bearer {other}"}, lambda s: s.call_tool("list_sessions", {})
    )
    assert _data(seen)["items"] == []
    # refused without a key, or with a wrong one: JSON 401, as the rest of the API
    for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}):
        refused = httpx.post(
            url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        )
        assert refused.status_code == 401
        assert "Missing or unknown API key" in refused.json()["detail"]


def test_install_registers_the_server_in_mcp_json_idempotently_and_removably(repo) -> None:
    import subprocess

    repo, env = repo
    existing = {"mcpServers": {"other": {"command": "other-server"}}, "note": "kept"}
    (repo / ".mcp.json").write_text(json.dumps(existing))

    def cli(*args: str) -> str:
        run = subprocess.run(
            [*sessionmem_cmd(), "install", "claude-code", *args],
            cwd=repo,
            env={**env, "HOME": str(repo.parent)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout

    assert "Registered the MCP server sessionmem" in cli("--mcp")
    first = json.loads((repo / ".mcp.json").read_text())
    entry = first["mcpServers"]["sessionmem"]
    assert entry["args"][-1] == "mcp" and Path(entry["command"]).is_absolute()
    assert first["mcpServers"]["other"] == existing["mcpServers"]["other"]
    assert first["note"] == "kept"
    assert "already registers sessionmem" in cli("--mcp")
    assert json.loads((repo / ".mcp.json").read_text()) == first
    assert "Removed the MCP server sessionmem" in cli("--mcp", "--uninstall")
    assert json.loads((repo / ".mcp.json").read_text()) == existing
    # the registered command starts a server an MCP client can use
    cli("--mcp")
    entry = json.loads((repo / ".mcp.json").read_text())["mcpServers"]["sessionmem"]
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=repo)

    async def main() -> Any:
        with open(os.devnull, "w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return (await session.list_tools()).tools

    assert {t.name for t in anyio.run(main)} == TOOLS


def test_only_a_bearer_scheme_carries_a_key() -> None:
    from sessionmem.http.core import bearer

    assert bearer("Bearer smk_abc") == "smk_abc" and bearer("bearer  smk_abc ") == "smk_abc"
    for other in ("Basic smk_abc", "smk_abc", "Bearer", "", None):
        assert bearer(other) is None, other
