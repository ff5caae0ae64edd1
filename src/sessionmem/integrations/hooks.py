"""`sessionmem hook AGENT`: the agents' lifecycle hooks — Claude Code's, and Codex's, Gemini CLI's
and Cursor's on the same lines (docs/decisions.md, "Agent hooks" and "Other agents").

- PreCompact / SessionEnd (and Stop, when installed with `--stop`): read the transcript and save
  a snapshot (`pre_compact`, `session_end`, `checkpoint`).
- SessionStart: print the restore briefing of the best snapshot for this project, and write it to
  `.memory/.local/last-briefing.md` too (the agent has at times dropped hook output).

A memory hook must never block or break the agent: it always exits 0, never prints anything
decision-like, prints to stdout only for SessionStart, and writes diagnostics to stderr and
`.memory/.local/hooks.log`. This module is the hook's whole import path: no FastAPI, no uvicorn,
no command-line parser.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..config import read_config
from ..errors import NotFound, SessionmemError
from ..layout import Layout, default_user, existing_root, project_root, user_store
from ..project import holds_work
from .agents import READERS
from .background import append_log, now_text, start_sync
from .events import record_event, recorded
from .gitinfo import branch_and_commit
from .incremental import digest, mark_saved, read_transcript, saved_digest
from .record import (
    Capture,
    aligned,
    as_dict,
    capture_settings,
    folder_redactor,
    masker,
    redacted,
    same_content,
    union,
    with_sources,
)
from .record import lineage as record_lineage
from .transcript import EMPTY, MAX_COMMANDS, Parsed

if TYPE_CHECKING:
    from ..memory import Memory
    from ..model import Snapshot
    from ..redact import Redactor


class Agent(NamedTuple):
    """How one agent calls its hooks (docs/decisions.md, "Other agents")."""

    name: str
    start: str  # the session-start event
    saves: dict[str, str]  # event -> the snapshot's event
    project_env: str | None  # the variable naming the project folder
    output: str  # how SessionStart's briefing is printed: "text", "gemini" or "cursor"


AGENTS = {
    "claude-code": Agent(
        "claude-code",
        "SessionStart",
        {"PreCompact": "pre_compact", "SessionEnd": "session_end", "Stop": "checkpoint"},
        "CLAUDE_PROJECT_DIR",
        "text",
    ),
    # No SessionEnd: a checkpoint after every turn that changed something.
    "codex": Agent(
        "codex", "SessionStart", {"PreCompact": "pre_compact", "Stop": "checkpoint"}, None, "text"
    ),
    # SessionEnd and PreCompress are not awaited: AfterAgent keeps a checkpoint per turn too.
    "gemini": Agent(
        "gemini",
        "SessionStart",
        {"PreCompress": "pre_compact", "SessionEnd": "session_end", "AfterAgent": "checkpoint"},
        "GEMINI_PROJECT_DIR",
        "gemini",
    ),
    "cursor": Agent(
        "cursor",
        "sessionStart",
        {"preCompact": "pre_compact", "sessionEnd": "session_end", "stop": "checkpoint"},
        None,
        "cursor",
    ),
}
SAVE_EVENTS = AGENTS["claude-code"].saves
LAST_BRIEFING = "last-briefing.md"
MAX_PAYLOAD = 16 * 1024 * 1024  # an agent's hook input is a few KiB
SYNC_EVERY = 600  # seconds between background syncs of an agent with no session end (Codex)


class Hook:
    def __init__(
        self,
        payload: dict[str, Any],
        env: dict[str, str] | os._Environ[str],
        agent: Agent = AGENTS["claude-code"],
        *,
        sync: bool = False,
    ):
        self.agent = agent
        self.sync = sync  # `hook AGENT --sync`: a background sync after a session
        self.payload = _normalized(payload)
        self.env = env
        from_env = env.get(agent.project_env) if agent.project_env else None
        self.cwd = str(self.payload.get("cwd") or from_env or os.getcwd())
        # "This project" as the CLI records it too: the git top level (layout.project_root).
        self.project = str(project_root(Path(from_env or self.cwd)))
        # Opt-in per repository: a `.memory/` that exists (`sessionmem init`), else the per-user
        # folder — never a new folder in someone's working tree (docs/decisions.md, "Where the
        # hooks write").
        found = existing_root(Path(self.project))
        self.private = found is None
        self.root = found if found is not None else user_store()
        self.log_path = self.root / ".local" / "hooks.log"

    def backend(self) -> Memory:
        url = self.env.get("SESSIONMEM_URL")
        if url:
            # lazy: ..client costs 92 ms at start-up
            from ..client import Client

            return Client(url, self.env.get("SESSIONMEM_API_KEY"))
        # lazy: ..store costs 18 ms at start-up
        from ..store import Store

        return Store(self.root).for_user(default_user(None, Path(self.cwd)))

    @property
    def session_id(self) -> str:
        return str(self.payload.get("session_id") or "")

    def _record_event(self, event: str) -> None:
        problem = record_event(
            self.root, self.session_id, event, self.payload, masker(self._redactor)
        )
        if problem:
            self.log(problem)

    def _from_events(self) -> Parsed:
        files, commands = recorded(self.root, self.session_id, self.project)
        self.log(f"no transcript: {len(files)} files and {len(commands)} commands from its hooks")
        return EMPTY._replace(files_modified=files, commands_run=commands[-MAX_COMMANDS:])

    def run(self) -> str:
        event = self.payload.get("hook_event_name")
        saves = self.agent.saves
        if event == self.agent.start:
            return self.session_start()
        if event in ("afterFileEdit", "afterShellExecution"):
            self._record_event(str(event))
            return ""
        if event in saves:
            parsed = self.transcript()
            checkpoint = saves[str(event)] == "checkpoint"
            if checkpoint and parsed is not None and self._unchanged(parsed):
                self.log("nothing new in the transcript since the last save: nothing stored")
                return ""
            self.save(saves[str(event)], parsed or self._from_events())
            if parsed is not None:  # (stored or not, this is what the store now reflects)
                mark_saved(str(self.payload["transcript_path"]), self._states, parsed)
            self.sync_after(saves[str(event)])
            return ""
        self.log(f"ignored event {event!r}")
        return ""

    # --- saving --------------------------------------------------------------------------

    @property
    def _states(self) -> Path:
        return self.root / ".local" / "transcripts"

    def _unchanged(self, parsed: Parsed) -> bool:
        """Whether the last snapshot saved from this transcript already holds all it says (a
        `Stop` after a turn of plain conversation stores nothing)."""
        path = str(self.payload["transcript_path"])
        return saved_digest(path, self._states) == digest(parsed)

    def transcript(self) -> Parsed | None:
        """What the transcript says, read from where the last hook stopped; None when the
        payload names no transcript or it cannot be read (then nothing else is read in its
        place: the newest transcript could be another session's)."""
        path = self.payload.get("transcript_path")
        if not isinstance(path, str) or not path:
            self.log("no transcript_path in the payload: saving what the payload gives")
            return None
        try:
            reader = READERS[self.agent.name]
            parsed, how = read_transcript(
                path, self.project, self._states, reader, masker(self._redactor)
            )
        except OSError as exc:
            why = exc.strerror or exc
            self.log(f"cannot read the transcript {path}: {why}; saving what the payload gives")
            return None
        self.log(f"read the transcript {how}: {parsed.lines} lines, {parsed.skipped} skipped")
        return parsed

    def save(self, event: str, parsed: Parsed | None = None) -> Snapshot | None:
        """Store what the transcript says as a snapshot of this session — unless it holds
        nothing (a turn of plain chat with no earlier save), or the same as the session's
        latest snapshot: then nothing is stored, and hooks.log says why (docs/decisions.md,
        "Never empty, never repeated")."""
        session_id = str(self.payload.get("session_id") or "")
        if parsed is None:
            parsed = self.transcript() or EMPTY
        backend = self.backend()
        try:
            before = backend.get(session_id)
        except (SessionmemError, NotFound):
            before = None
        body = self._body(event, parsed, before)
        if before is None and not holds_work(body):
            self.log(f"nothing to record for {session_id} ({event}): nothing stored")
            return None
        if before is not None and same_content(before.session_data, body):
            self.log(
                f"{session_id} unchanged since version {before.version} ({event}): nothing stored"
            )
            return None
        snap = backend.save(body)
        tasks = body["open_tasks"]
        self.log(
            f"saved {session_id} version {snap.version} ({event}) in {self._where_saved()}: "
            f"{len(tasks)} open tasks ({parsed.tasks_source or 'kept'}), "
            f"{len(body['key_decisions'])} decisions"
        )
        return snap

    def _where_saved(self) -> str:
        return f"the per-user store {self.root}" if self.private else str(self.root)

    def _body(self, event: str, parsed: Parsed, before: Snapshot | None) -> dict[str, Any]:
        session_id = str(self.payload.get("session_id") or "")
        previous = before.session_data if before is not None else {}
        meta = as_dict(previous.get("metadata"))
        old_sources = as_dict(meta.get("sources"))
        branch, commit = branch_and_commit(self.cwd)
        capture = self._capture()
        # The previous snapshot holds its items as stored, credentials masked; compare the
        # transcript's items masked the same way, or each masked item would be added again on
        # every save.
        lists = redacted(
            self._redactor,
            {
                "files_modified": parsed.files_modified,
                "commands_run": parsed.commands_run if capture.commands else [],
                "key_decisions": parsed.key_decisions,
                "open_tasks": parsed.open_tasks,
                "in_progress": parsed.in_progress,
                "closed_tasks": parsed.closed_tasks,
                "requests": parsed.requests,
                "text": [parsed.current_work, parsed.next_step, parsed.title or ""],
            },
            capture.home,
        )
        decisions, decision_sources = with_sources(
            previous.get("key_decisions"),
            old_sources.get("key_decisions"),
            lists["key_decisions"],
            parsed.decision_sources,
        )
        old_tasks = [t for t in previous.get("open_tasks") or [] if isinstance(t, str)]
        stated = as_dict(meta.get("stated"))
        if parsed.tasks_source is not None:
            tasks = lists["open_tasks"]
            task_sources = [parsed.tasks_source] * len(tasks)
            doing = lists["in_progress"]
            if "open_tasks" in parsed.stated:
                stated = {**stated, "open_tasks": parsed.stated["open_tasks"]}
        else:  # no task list in the transcript: the previous snapshot's stand
            tasks = old_tasks
            kept = old_sources.get("open_tasks")
            task_sources = (
                [str(k) for k in kept] if aligned(kept, tasks) else ["earlier"] * len(tasks)
            )
            doing = [t for t in meta.get("in_progress") or [] if t in tasks]
        if "handover" in parsed.stated:
            stated = {**stated, "handover": parsed.stated["handover"]}
        # Closed in this session: marked done in the transcript, or gone from a list that
        # replaced the one the last save held (the project view drops them from later briefings).
        closed = union(previous.get("closed_tasks"), lists["closed_tasks"])
        closed = union(closed, [t for t in old_tasks if t not in tasks])
        closed = [t for t in closed if t not in tasks]
        current_work, next_step, title = lists["text"]
        metadata: dict[str, Any] = {
            "agent": self.agent.name,
            "hook": self.payload.get("hook_event_name"),
            **{
                k: self.payload[k]
                for k in ("trigger", "reason", "source")
                if isinstance(self.payload.get(k), str)
            },
            "sources": {"open_tasks": task_sources, "key_decisions": decision_sources},
        }
        if doing:
            metadata["in_progress"] = doing
        if stated:
            metadata["stated"] = stated
        kept_title = title or meta.get("title")
        if isinstance(kept_title, str) and kept_title:
            metadata["title"] = kept_title
        lineage = record_lineage(parsed, before, meta)
        if lineage:
            metadata["compaction"] = lineage
        parent = parsed.parent_session or meta.get("parent_session")
        if isinstance(parent, str) and parent and parent != session_id:
            metadata["parent_session"] = parent
        old_requests = [r for r in previous.get("requests") or [] if isinstance(r, str)]
        body: dict[str, Any] = {
            "session_id": session_id,
            "event": event,
            "project_path": self.project,
            "files_modified": union(previous.get("files_modified"), lists["files_modified"]),
            "commands_run": union(
                previous.get("commands_run") if capture.commands else [],
                lists["commands_run"],
                keep_repeats=True,
            )[-MAX_COMMANDS:],
            "key_decisions": decisions,
            "open_tasks": tasks,
            "git_branch": branch or parsed.git_branch,
            "git_commit": commit,
            "metadata": metadata,
        }
        requests = lists["requests"] or old_requests
        if requests:
            body["requests"] = requests
        if closed:
            body["closed_tasks"] = closed
        for name, text in (("current_work", current_work), ("next_step", next_step)):
            kept_text = previous.get(name)
            if text or (isinstance(kept_text, str) and kept_text):
                body[name] = text or kept_text
        return body

    @functools.cached_property
    def _config(self) -> dict[str, Any]:
        """The memory folder's config.toml, read once per hook (a damaged one: said, and the
        defaults apply — the store refuses it when it saves)."""

        try:
            return read_config(self.root)
        except SessionmemError as exc:
            self.log(f"{exc}; using the defaults")
            return {}

    @functools.cached_property
    def _redactor(self) -> Redactor | None:
        return folder_redactor(self._config)

    def _capture(self) -> Capture:
        try:
            return capture_settings(self._config.get("capture", {}))
        except SessionmemError as exc:
            self.log(f"{exc}; capturing with the defaults")
            return Capture()

    # --- restoring -----------------------------------------------------------------------

    def session_start(self) -> str:
        session_id = str(self.payload.get("session_id") or "")
        self._remember_session(session_id)
        source = self.payload.get("source")
        parsed = None
        if source in ("compact", "resume", "clear") and self.payload.get("transcript_path"):
            parsed = self.transcript()
        if source == "compact" and session_id:
            # The transcript now ends with the fresh compaction summary: keep its hand-over in
            # the store before anything else, in case no later hook of this session fires.
            try:
                self.save("checkpoint", parsed or EMPTY)
                if parsed is not None:
                    mark_saved(str(self.payload["transcript_path"]), self._states, parsed)
            except SessionmemError as exc:
                self.log(f"could not save the compaction's checkpoint: {exc}")
        # lazy: .restore costs 14 ms at start-up
        from .restore import restore_text, view_for

        view = view_for(
            self.backend(),
            self.project,
            session_id=session_id,
            resumed=source in ("resume", "compact"),
            parent=parsed.parent_session if parsed is not None else None,
            also=(self.cwd,),
        )
        snap = view.head
        if snap is None:
            self.log(f"no snapshot to restore from {self._where_saved()}")
            return ""
        text = restore_text(view, self.project)
        try:
            local = self.root / ".local"
            local.mkdir(parents=True, exist_ok=True)
            tmp = local / f".{LAST_BRIEFING}.{os.getpid()}"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, local / LAST_BRIEFING)
        except OSError as exc:
            self.log(f"could not write the briefing file: {exc}")
        carried = len(view.carried(view.open_tasks))
        self.log(
            f"restored {snap.session_id} version {snap.version} from {self._where_saved()} "
            f"({carried} open task{'s' if carried != 1 else ''} carried from earlier sessions)"
        )
        return self._start_output(text)

    def _start_output(self, text: str) -> str:
        """The briefing as this agent reads SessionStart's output: plain text (Claude Code,
        Codex), or the JSON object Gemini CLI and Cursor parse stdout as."""
        if self.agent.output == "gemini":
            out = {
                "hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": text}
            }
            return json.dumps(out)
        if self.agent.output == "cursor":
            return json.dumps({"additional_context": text})
        return text

    def _remember_session(self, session_id: str) -> None:
        """So `sessionmem save --merge --decision ...` during the session knows its id."""
        if not session_id:
            return
        try:
            local = self.root / ".local"
            local.mkdir(parents=True, exist_ok=True)
            record = {"session_id": session_id, "cwd": self.cwd, "at": now_text()}
            Layout(self.root).current_session_file.write_text(json.dumps(record))
        except OSError as exc:
            self.log(f"could not record the current session: {exc}")

    def log(self, message: str) -> None:
        sys.stderr.write(f"sessionmem: {message}\n")
        if self.private or self.root.is_dir():
            append_log(self.log_path, str(self.payload.get("hook_event_name")), message)

    def sync_after(self, kind: str) -> None:
        """With `--sync`: after a session's end (an agent without one: a checkpoint, at most
        every SYNC_EVERY seconds), `sessionmem sync` in the background (`background`)."""
        if not self.sync or self.private:
            return
        if kind != "session_end" and "session_end" in self.agent.saves.values():
            return
        said = start_sync(self.root, every=0 if kind == "session_end" else SYNC_EVERY)
        if said:
            self.log(said)


def _normalized(payload: dict[str, Any]) -> dict[str, Any]:
    """One payload shape for every agent: Cursor names the session `conversation_id` and the
    project `workspace_roots` (it sends no `cwd`)."""
    out = dict(payload)
    if not out.get("session_id") and isinstance(out.get("conversation_id"), str):
        out["session_id"] = out["conversation_id"]
    roots = out.get("workspace_roots")
    if not out.get("cwd") and isinstance(roots, list) and roots and isinstance(roots[0], str):
        out["cwd"] = roots[0]
    return out


def main(argv: list[str]) -> int:
    """Entry point of `sessionmem hook AGENT` (`argv`: [AGENT], Claude Code by default). Always
    returns 0."""
    started = time.perf_counter()
    hook = None
    agent = AGENTS.get(argv[0] if argv else "claude-code")
    if agent is None:
        known = ", ".join(AGENTS)
        sys.stderr.write(f"sessionmem: unknown agent {argv[0]!r}; supported: {known}\n")
        return 0  # a hook never fails the agent
    try:
        raw = sys.stdin.buffer.read(MAX_PAYLOAD + 1)
        if len(raw) > MAX_PAYLOAD:
            raise ValueError(f"the hook input is over {MAX_PAYLOAD >> 20} MiB")
        payload = json.loads(raw) if raw.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("the hook input is not a JSON object")
        hook = Hook(payload, os.environ, agent, sync="--sync" in argv[1:])
        out = hook.run()
        if not out and agent.output == "cursor":
            out = "{}"  # Cursor reads every hook's stdout as JSON
        if out:
            sys.stdout.write(out)
            sys.stdout.flush()
    except BaseException as exc:  # noqa: BLE001 - a memory hook must never break the agent
        message = f"hook failed: {type(exc).__name__}: {exc}"
        if hook is not None:
            hook.log(message)
        else:
            sys.stderr.write(f"sessionmem: {message}\n")
    finally:
        if hook is not None and os.environ.get("SESSIONMEM_HOOK_TIMING"):
            hook.log(f"took {1000 * (time.perf_counter() - started):.1f} ms")
    return 0
