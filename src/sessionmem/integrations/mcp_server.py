"""`sessionmem mcp`: the memory as MCP tools and resources (docs/decisions.md, "MCP"), for any
agent that speaks the Model Context Protocol — over stdio, or over HTTP at `/mcp` of `sessionmem
serve`. Built on the official SDK (`mcp` 2.x, `MCPServer`).

Every tool calls the same `Memory` the CLI and the hooks use (a memory folder, or a server), so
the rules, the messages and the redaction are theirs. A failure is a tool error carrying the
library's message; nothing here writes to stdout (over stdio it is the protocol's).
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import Field, ValidationError

from .. import __version__
from ..errors import NotFound, SessionmemError
from ..memory import Memory, merged
from .gitinfo import branch_and_commit
from .restore import restore_text, view_for

if TYPE_CHECKING:
    from ..model import SearchArgs, SessionsArgs, Snapshot

INSTRUCTIONS = (
    "Session memory for this project: what earlier sessions did, decided and left open. Call "
    "`get_briefing` at the start of a task to pick up where the last session stopped. Call "
    "`save_checkpoint` the moment you make a decision worth keeping or finish or start a task "
    "(it adds to the session's latest snapshot). `list_sessions`, `get_snapshot`, "
    "`get_history` and `diff_snapshots` answer questions about earlier work."
)

# (write?) -> the user's memory; raises with a message for the agent when there is none.
MemoryFor = Callable[[bool], Memory]
Items = Annotated[list[str], Field(default_factory=list)]
# The arguments several tools take, described once.
SessionId = Annotated[str, Field(description="the session")]
Cursor = Annotated[str | None, Field(description="next_cursor of the page before")]
Ref = Annotated[str | None, Field(description="version or snapshot id")]
OnlyProject = Annotated[str | None, Field(description="only this project")]
OnlyAgent = Annotated[
    str | None, Field(description="only what this agent saved (claude-code, codex, ...)")
]


def build(
    memory: MemoryFor, *, project: str | None, session: Callable[[], str | None]
) -> MCPServer:
    """The MCP server over `memory`, for an agent working in `project` (None on a server, which
    has no project of its own); `session` names the agent's current session when a tool is not
    told (the one the hooks recorded)."""

    server = MCPServer("sessionmem", version=__version__, instructions=INSTRUCTIONS)

    def call(write: bool, fn: Callable[[Memory], Any]) -> Any:
        try:
            mem = memory(write)
        except Exception as exc:  # e.g. no memory folder here: the command line's message
            raise ToolError(str(exc)) from None
        try:
            return fn(mem)
        except SessionmemError as exc:
            raise ToolError(str(exc)) from None

    def read(fn: Callable[[Memory], Any]) -> dict[str, Any]:
        result: dict[str, Any] = call(False, fn)
        return result

    def current(given: str | None) -> str:
        found = given or session()
        if not found:
            raise ToolError(
                "session_id is required: no current session is recorded here (the agent's "
                "SessionStart hook records it)."
            )
        return found

    @server.tool(
        description=(
            "Save a checkpoint of this session's working state. By default it adds to the "
            "session's latest snapshot: new decisions, open tasks, files modified and commands "
            "run are appended, tasks in `done` are closed. Call it right after making a "
            "decision worth keeping or when a task starts or ends. `replace` stores exactly "
            "the lists given instead."
        ),
        structured_output=True,
    )
    def save_checkpoint(
        decisions: Annotated[Items, Field(description="key decisions made, one sentence each")],
        tasks: Annotated[Items, Field(description="tasks still open, to add")],
        done: Annotated[
            Items,
            Field(
                description="tasks now finished, or items dropped (exact text): they leave "
                "this and every later briefing, whichever session left them open"
            ),
        ],
        files: Annotated[Items, Field(description="files modified (paths)")],
        commands: Annotated[Items, Field(description="commands run")],
        session_id: Annotated[
            str | None, Field(description="default: the current session of this project")
        ] = None,
        replace: Annotated[bool, Field(description="store only what is given")] = False,
    ) -> dict[str, Any]:
        sid = current(session_id)
        lists = {
            "key_decisions": decisions,
            "open_tasks": tasks,
            "files_modified": files,
            "commands_run": commands,
        }

        def save(m: Memory) -> dict[str, Any]:
            base: dict[str, Any] = {}
            if not replace:
                with contextlib.suppress(NotFound):  # else the session's first snapshot
                    base = dict(m.get(sid).session_data)
            base.pop("event", None)
            body = merged(base, lists, done)
            body.update(session_id=sid, event="checkpoint")
            if project:  # where and when, as the CLI and the hooks record them
                branch, commit = branch_and_commit(project)
                body["project_path"] = body.get("project_path") or project
                body["git_branch"] = branch or body.get("git_branch")
                body["git_commit"] = commit or body.get("git_commit")
            return _answer(m.save(body))

        result: dict[str, Any] = call(True, save)
        return result

    @server.tool(
        description=(
            "The briefing of this project's memory: the latest snapshot's current work, next "
            "step, open tasks, decisions, files and recent commands, as Markdown (what the "
            "agent's SessionStart hook prints). Empty when nothing is stored yet."
        )
    )
    def get_briefing(
        project_path: Annotated[
            str | None, Field(description="default: the project this server runs in")
        ] = None,
    ) -> str:
        # git runs only in this server's own project: a path a client names is looked up in
        # the memory, never probed on the host (docs/decisions.md, "A hostile workspace").
        probe = project is not None and project_path in (None, project)
        return str(
            call(False, lambda m: _briefing(m, project_path or project, session(), probe=probe))
        )

    @server.tool(
        description=(
            "A session's latest snapshot, or a past one by `version` (1 is the first) or by "
            "`snapshot_id`."
        ),
        structured_output=True,
    )
    def get_snapshot(
        session_id: SessionId,
        version: Annotated[int | None, Field(description="a past version (1 is the first)")] = None,
        snapshot_id: Annotated[str | None, Field(description="a past snapshot's id")] = None,
    ) -> dict[str, Any]:
        return read(lambda m: _answer(m.get(session_id, version=version, snapshot_id=snapshot_id)))

    @server.tool(
        description=(
            "A session's snapshots, newest first: version, time, event and how many items "
            "each list held. Pass `next_cursor` back as `cursor` for the next page."
        ),
        structured_output=True,
    )
    def get_history(
        session_id: SessionId,
        limit: Annotated[int, Field(description="entries per page (1-1000)")] = 20,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        return read(lambda m: m.history(session_id, limit=limit, cursor=cursor).view())

    @server.tool(
        description=(
            "What changed between two snapshots of a session: items added to and removed from "
            'each list, fields changed. `from_ref`/`to_ref` are versions ("3") or snapshot '
            "ids; by default from the previous snapshot to the latest."
        ),
        structured_output=True,
    )
    def diff_snapshots(
        session_id: SessionId, from_ref: Ref = None, to_ref: Ref = None
    ) -> dict[str, Any]:
        return read(lambda m: m.diff(session_id, from_ref, to_ref).view())

    @server.tool(
        description=(
            "Your sessions, newest first, each with its latest snapshot's summary; filter by "
            "project, git branch or event (pre_compact, session_end, checkpoint)."
        ),
        structured_output=True,
    )
    def list_sessions(
        project_path: OnlyProject = None,
        git_branch: Annotated[str | None, Field(description="only this branch")] = None,
        event: Annotated[str | None, Field(description="only this event")] = None,
        agent: OnlyAgent = None,
        limit: Annotated[int, Field(description="sessions per page (1-1000)")] = 20,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        args: SessionsArgs = {
            "project_path": project_path,
            "git_branch": git_branch,
            "event": event,
            "agent": agent,
            "limit": limit,
            "cursor": cursor,
        }
        return read(lambda m: m.sessions(**args).view())

    @server.tool(
        description=(
            "Search this memory: which sessions decided, left open, touched or ran something. "
            'Words, "exact phrases", prefix*, and task:, decision:, file:, command: to look in '
            "one list. Hits come best first with a snippet; newest version of each session "
            "unless `all_versions`."
        ),
        structured_output=True,
    )
    def search_memory(
        query: Annotated[
            str, Field(description='e.g. rate limiting, file:router.py, "migrate the cache"')
        ],
        project_path: OnlyProject = None,
        agent: OnlyAgent = None,
        all_versions: Annotated[bool, Field(description="every version, not only newest")] = False,
        limit: Annotated[int, Field(description="hits per page (1-1000)")] = 10,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        args: SearchArgs = {
            "project_path": project_path,
            "agent": agent,
            "all_versions": all_versions or None,
            "limit": limit,
            "cursor": cursor,
        }
        return read(lambda m: m.search(query, **args).view())

    @server.resource(
        "sessionmem://briefing",
        name="briefing",
        description="The briefing of this project's memory (Markdown)",
        mime_type="text/markdown",
    )
    def briefing_resource() -> str:
        try:
            return _briefing(memory(False), project, session(), probe=project is not None)
        except Exception as exc:
            raise ResourceError(str(exc)) from None

    @server.resource(
        "sessionmem://session/{session_id}",
        name="session",
        description="A session's latest snapshot (JSON)",
        mime_type="application/json",
    )
    def session_resource(session_id: str) -> str:
        try:
            return memory(False).get(session_id).json().decode()
        except Exception as exc:
            raise ResourceError(str(exc)) from None

    _refuse_unknown_arguments(server)
    return server


def _refuse_unknown_arguments(server: MCPServer) -> None:
    """A tool called with an argument it does not take is a tool error naming the ones it
    takes (the SDK ignores extra arguments: `open_tasks=[...]` for `tasks` would save nothing
    and say success)."""
    original = server.call_tool

    async def call_tool(name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = server._tool_manager.get_tool(name)
        if tool is not None:
            known = sorted((tool.parameters or {}).get("properties", {}))
            unknown = sorted(set(arguments or {}) - set(known))
            if unknown:
                near = difflib.get_close_matches(unknown[0], known, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ToolError(
                    f"{name}: no argument {unknown[0]!r}{hint}; it takes: {', '.join(known)}."
                )
        try:
            return await original(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):  # the SDK's check of the arguments' types
                raise ToolError(_one_line(name, cause)) from None
            text = str(exc).removeprefix(f"Error executing tool {name}: ")
            raise ToolError(f"{name}: {text}") from None

    server.call_tool = call_tool  # type: ignore[method-assign]


_TYPE_WORDS = {
    "int": "must be an integer",
    "string": "must be a string",
    "list": "must be a list of strings",
    "bool": "must be true or false",
    "missing": "is required",
}


def _one_line(tool: str, error: ValidationError) -> str:
    """An argument error in the library's words: the field, the rule, one line."""
    parts = []
    for e in error.errors():
        field = ".".join(str(p) for p in e.get("loc", ())) or "arguments"
        kind = str(e.get("type", ""))
        rule = next((w for k, w in _TYPE_WORDS.items() if kind.startswith(k)), None)
        parts.append(f"{field} {rule or str(e.get('msg', 'is not valid')).lower()}.")
    return f"{tool}: " + " ".join(parts)


def _answer(snap: Snapshot) -> dict[str, Any]:
    view: dict[str, Any] = json.loads(snap.json())
    return view


def _briefing(memory: Memory, project: str | None, session: str | None, *, probe: bool) -> str:
    """The briefing for `project` (every project of the user's with none); git is asked for the
    branch and for staleness only when `probe`."""
    if not project:
        return restore_text(memory.project(None), None)
    view = view_for(memory, project, session_id=session, resumed=bool(session), probe=probe)
    return restore_text(view, project if probe else None)
