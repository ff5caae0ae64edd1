"""Reading a Claude Code transcript (`transcript_path`) into snapshot fields, deterministically and
with no LLM call (docs/decisions.md, "What the hooks capture"). The format is not officially
documented, so every line is read defensively: a line that is not understood is skipped, never
fatal.

The reader's whole state is plain data, so a hook can keep it in `.memory/.local/transcripts/`
and read only the lines added since its last call (`read_transcript`): a `Stop` hook fires after
every turn of a session whose transcript may be tens of megabytes.

Where open tasks come from — a TodoWrite list, the task tools (TaskCreate/TaskUpdate), an
`ExitPlanMode` plan, a compaction summary's Pending Tasks — the newest of them in the transcript
wins, whole: a todo list written after a summary replaces the summary's tasks, and a summary
after a todo list replaces the list.

It is past our ~500-line habit: one reader whose state and rules (tasks, requests, the clock that
dates each task list) are kept together, since every other agent's reader inherits them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import stat
import zlib
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

MAX_COMMANDS = 50  # most recent last
_KEEP_COMMANDS = 200  # kept in the reader's state (a save keeps the last MAX_COMMANDS)
_KEEP_SEEN = 2000  # block ids remembered to skip a block written twice
_FILE_TOOLS = {
    "Edit": "file_path",
    "Write": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}
_SHELL_TOOLS = ("Bash", "PowerShell")
_DECISION = re.compile(
    r"^\s*(?:[-*]\s+)?(?:\*\*|__)?Decision:(?:\*\*|__)?\s*(.+?)\s*$", re.MULTILINE
)
_TASK_NUMBER = re.compile(r"#(\d+)")
_COMMIT = re.compile(r"\bgit(?:\s+-\S+(?:\s+\S+)?)*\s+commit\b")
_REMINDER = re.compile(r"<system-reminder>.*?(?:</system-reminder>|$)", re.DOTALL)
_QUERY = re.compile(r"<user_query>(.*?)(?:</user_query>|$)", re.DOTALL)
# What agents put in the user's turn that the user did not type: slash-command echoes and their
# output, interruption notes, environment and instruction blocks.
_NOT_TYPED = ("<", "[Request interrupted", "Caveat:", "# AGENTS.md instructions")
REQUEST_CHARS = 300
KEEP_REQUESTS = 3  # the latest requests kept beside the first
_KEEP_CLOSED = 200
STATE_VERSION = 2


class Parsed(NamedTuple):
    """What a transcript says, ready for a snapshot."""

    files_modified: list[str]
    commands_run: list[str]
    key_decisions: list[str]
    decision_sources: list[str]  # one per decision: "transcript", "save" or "summary"
    open_tasks: list[str]
    tasks_source: str | None  # "todo", "tasks", "plan", "summary"; None: no task list seen
    in_progress: list[str]  # open tasks marked in progress
    current_work: str
    next_step: str
    compactions: int  # compaction boundaries seen
    compacted_at: str | None  # the newest boundary's time
    parent_session: str | None  # another session this transcript continues
    git_branch: str | None
    cwd: str | None
    lines: int
    skipped: int
    requests: list[str]  # the user's first request, then the latest ones (one line each)
    title: str | None  # the agent's own title for this session (Claude Code's `summary`)
    closed_tasks: list[str]  # tasks this session marked done (todo "completed", TaskUpdate)
    stated: dict[str, Any]  # when the tasks and the hand-over were stated, and what came after


class Reader:
    """Reads transcript lines, in order, into a state of plain data (`state`)."""

    def __init__(self, project_root: str | None, state: dict[str, Any] | None = None):
        self.root = project_root.rstrip("/") + "/" if project_root else None
        self.s: dict[str, Any] = state or {
            "v": STATE_VERSION,
            "at": 0,  # lines read: the position of each source of tasks
            "lines": 0,
            "skipped": 0,
            "files": [],
            "commands": [],
            "decisions": {},  # text -> source
            "seen": [],
            "todos": None,
            "todos_at": -1,
            "tasks": {},  # id -> [subject, status]
            "tasks_at": -1,
            "creates": {},  # tool_use id -> the task's provisional id
            "plan": None,
            "plan_at": -1,
            "plan_use": None,
            "summary": None,  # the newest compaction summary's hand-over
            "summary_at": -1,
            "compactions": 0,
            "compacted_at": None,
            "session": None,
            "parent": None,
            "git_branch": None,
            "cwd": None,
            "now": None,  # the newest record's time
            "turns": 0,  # the user's requests read
            "ncommands": 0,
            "commits": 0,
            "first": None,  # the first request
            "requests": [],  # the latest KEEP_REQUESTS requests
            "titles": {},  # Claude's summary titles waiting for their leaf message
            "title": None,
            "last_uuid": None,
            "marks": {},  # task source -> [time, turns, commands, commits] when it was stated
            "closed": [],
        }
        self._seen = set(self.s["seen"])
        self._files = dict.fromkeys(self.s["files"])

    agent = "claude-code"

    @staticmethod
    def document(data: bytes) -> bool:
        """Whether `data` is one JSON document rather than JSON lines (Gemini's older format)."""
        return False

    def read_document(self, data: bytes) -> None:
        raise NotImplementedError

    def line(self, raw: bytes) -> None:
        """Read one line of the transcript (each agent's reader reads its own records)."""
        s = self.s
        s["lines"] += 1
        s["at"] += 1
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):  # also bytes that are not UTF-8, nesting past
            # what the parser follows
            s["skipped"] += 1  # e.g. a truncated last line
            return
        if isinstance(rec, dict):
            self.clock(rec.get("timestamp"))
            self.record(rec)

    def record(self, rec: dict[str, Any]) -> None:
        """One Claude Code transcript record."""
        if rec.get("isSidechain"):
            return
        kind = rec.get("type")
        if kind == "summary":
            self._title(rec.get("summary"), rec.get("leafUuid"))
            return
        uuid = rec.get("uuid")
        if isinstance(uuid, str):
            self.s["last_uuid"] = uuid
            title = self.s["titles"].pop(uuid, None)
            if title:
                self.s["title"] = title
        if kind == "system" and rec.get("subtype") == "compact_boundary":
            self.compaction(rec.get("timestamp"))
            return
        if rec.get("isCompactSummary"):
            self._summary(rec.get("message"))
            return
        if rec.get("isMeta"):
            return
        self._where(rec)
        message = rec.get("message")
        if not isinstance(message, dict):
            return
        content = message.get("content")
        if kind == "user" and isinstance(content, str):
            self.request(content)
            return
        if not isinstance(content, list):
            return
        if kind == "assistant":
            for n, block in enumerate(content):
                if isinstance(block, dict):
                    self._assistant_block(block, f"{message.get('id')}:{n}")
        elif kind == "user":
            texts = []
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    self._tool_result(block, rec.get("toolUseResult"))
                elif isinstance(block, dict) and block.get("type") == "text":
                    texts.append(str(block.get("text") or ""))
            if texts:
                self.request("\n".join(texts))

    # --- what every agent's transcript says, in the same words ------------------------------

    def file(self, path: Any) -> None:
        if isinstance(path, str) and path:
            self._files.setdefault(self._relative(path), None)

    def command(self, command: Any) -> None:
        if isinstance(command, str) and command.strip():
            self.s["ncommands"] += 1
            if _COMMIT.search(command):
                self.s["commits"] += 1
            self.s["commands"].append(command)
            del self.s["commands"][:-_KEEP_COMMANDS]
            self._decisions_from_command(command)

    def text(self, text: Any, key: str) -> None:
        """Assistant text: its `Decision:` lines (once per block, whatever rewrites it)."""
        if isinstance(text, str) and self._first_time(f"text:{key}:{zlib.crc32(text.encode())}"):
            for m in _DECISION.finditer(text):
                self.s["decisions"].setdefault(m.group(1).rstrip("*_ "), "transcript")

    def todos(self, items: list[tuple[Any, Any]]) -> None:
        """A whole task list (TodoWrite, Codex's update_plan): (text, status) pairs."""
        self.s["todos"] = [[str(c), str(st or "pending")] for c, st in items if c]
        self.s["todos_at"] = self.s["at"]
        self._mark("todo")
        for text, status in self.s["todos"]:
            if status == "completed":
                self.closed(text)

    def request(self, text: Any) -> None:
        """A message the user typed: a turn, and the session's intent (the first request and
        the latest ones are kept, each on one line)."""
        if not isinstance(text, str):
            return
        query = _QUERY.search(text)  # Cursor wraps what the user typed in <user_query>
        text = _REMINDER.sub("", query.group(1) if query else text).strip()
        if not text or text.startswith(_NOT_TYPED):
            return
        line = " ".join(text.split())
        if len(line) > REQUEST_CHARS:
            line = line[: REQUEST_CHARS - 1] + "…"
        s = self.s
        s["turns"] += 1
        if s["first"] is None:
            s["first"] = line
        if line in s["requests"]:
            s["requests"].remove(line)
        s["requests"].append(line)
        del s["requests"][:-KEEP_REQUESTS]

    def closed(self, text: Any) -> None:
        """A task this session marked done."""
        if isinstance(text, str) and text and text not in self.s["closed"]:
            self.s["closed"].append(text)
            del self.s["closed"][:-_KEEP_CLOSED]

    def clock(self, ts: Any) -> None:
        if isinstance(ts, str) and ts:
            self.s["now"] = ts

    def _mark(self, source: str) -> None:
        s = self.s
        s["marks"][source] = [s["now"], s["turns"], s["ncommands"], s["commits"]]

    def _title(self, title: Any, leaf: Any) -> None:
        """Claude Code's title for a conversation: this session's only when its leaf message is
        in this transcript (a new transcript also lists titles of earlier conversations)."""
        if not isinstance(title, str) or not title.strip() or not isinstance(leaf, str):
            return
        if leaf == self.s["last_uuid"]:
            self.s["title"] = _one_line(title)
        else:
            titles = self.s["titles"]
            titles[leaf] = _one_line(title)
            for old in list(titles)[:-32]:
                del titles[old]

    def compaction(self, ts: Any) -> None:
        self.clock(ts)
        self.s["compactions"] += 1
        if isinstance(ts, str):
            self.s["compacted_at"] = ts

    def where(self, branch: Any = None, cwd: Any = None) -> None:
        if isinstance(branch, str) and branch:
            self.s["git_branch"] = branch
        if isinstance(cwd, str) and cwd:
            self.s["cwd"] = cwd

    def _where(self, rec: dict[str, Any]) -> None:
        s = self.s
        self.where(rec.get("gitBranch"), rec.get("cwd"))
        sid = rec.get("sessionId")
        if isinstance(sid, str) and sid:
            if s["session"] is None:
                s["session"] = sid
            elif sid != s["session"] and s["parent"] is None:
                # Lines of an earlier session carried into this one (resume, continue): the
                # first session named is the one continued.
                s["parent"], s["session"] = s["session"], sid

    def _summary(self, message: Any) -> None:
        text = message.get("content") if isinstance(message, dict) else None
        if isinstance(text, list):
            text = "\n".join(
                str(b.get("text", ""))
                for b in text
                if isinstance(b, dict) and b.get("type") == "text"
            )
        if not isinstance(text, str) or not text.strip():
            return
        # lazy: .handover costs 2 ms at start-up
        from .handover import read_summary  # (its patterns compile only when needed)

        handover = read_summary(text)
        self.s["summary"] = handover._asdict()
        self.s["summary_at"] = self.s["at"]
        self._mark("summary")
        for decision in handover.decisions:
            self.s["decisions"].setdefault(decision, "summary")

    def _assistant_block(self, block: dict[str, Any], fallback_key: str) -> None:
        btype = block.get("type")
        if btype == "text":
            self.text(block.get("text"), fallback_key)
            return
        if btype != "tool_use":
            return
        use_id = str(block.get("id") or fallback_key)
        if not self._first_time(use_id):
            return  # the same block written twice (lines that share message.id)
        name = block.get("name")
        data = block.get("input")
        if not isinstance(data, dict):
            return
        s = self.s
        if name in _FILE_TOOLS:
            self.file(data.get(_FILE_TOOLS[str(name)]))
        elif name in _SHELL_TOOLS:
            self.command(data.get("command"))
        elif name == "TodoWrite":
            todos = data.get("todos")
            if isinstance(todos, list):
                self.todos(
                    [(t.get("content"), t.get("status")) for t in todos if isinstance(t, dict)]
                )
        elif name == "TaskCreate":
            subject = data.get("subject") or data.get("description")
            if isinstance(subject, str) and subject:
                # Its id arrives with the result; until then, assume the next number.
                key = str(len(s["tasks"]) + 1)
                while key in s["tasks"]:
                    key = str(int(key) + 1)
                s["tasks"][key] = [subject, "pending"]
                s["creates"][use_id] = key
                s["tasks_at"] = s["at"]
                self._mark("tasks")
        elif name == "TaskUpdate":
            found = s["tasks"].get(str(data.get("taskId", "")))
            if found is not None:
                if isinstance(data.get("status"), str):
                    found[1] = data["status"]
                if isinstance(data.get("subject"), str) and data["subject"]:
                    found[0] = data["subject"]
                if found[1] in ("completed", "deleted"):
                    self.closed(found[0])
                s["tasks_at"] = s["at"]
                self._mark("tasks")
        elif name == "ExitPlanMode":
            plan = data.get("plan")
            if isinstance(plan, str) and plan.strip():
                # lazy: .handover costs 2 ms at start-up
                from .handover import read_plan

                steps = read_plan(plan)
                if steps:
                    s["plan"], s["plan_at"], s["plan_use"] = steps, s["at"], use_id
                    self._mark("plan")

    def _tool_result(self, block: dict[str, Any], extra: Any) -> None:
        s = self.s
        use_id = str(block.get("tool_use_id"))
        if use_id == s["plan_use"] and block.get("is_error"):
            s["plan"], s["plan_at"], s["plan_use"] = None, -1, None  # the user rejected it
            return
        key = s["creates"].pop(use_id, None)
        if key is None or key not in s["tasks"]:
            return
        real_id = None
        if isinstance(extra, dict):
            inner: dict[str, Any] = extra["task"] if isinstance(extra.get("task"), dict) else extra
            value = inner.get("id", inner.get("taskId"))
            if isinstance(value, str | int):
                real_id = str(value)
        if real_id is None:
            text = block.get("content")
            if isinstance(text, list):
                text = " ".join(str(c.get("text", "")) for c in text if isinstance(c, dict))
            m = _TASK_NUMBER.search(str(text or ""))
            real_id = m.group(1) if m else None
        if real_id is not None and real_id != key:
            s["tasks"][real_id] = s["tasks"].pop(key)

    def _decisions_from_command(self, command: str) -> None:
        if "sessionmem" not in command or "--decision" not in command:
            return
        try:
            words = shlex.split(command)
        except ValueError:
            return
        for i, word in enumerate(words):
            if word == "--decision" and i + 1 < len(words):
                self.s["decisions"].setdefault(words[i + 1], "save")
            elif word.startswith("--decision="):
                self.s["decisions"].setdefault(word.split("=", 1)[1], "save")

    def _first_time(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        self.s["seen"].append(key)
        if len(self.s["seen"]) > 2 * _KEEP_SEEN:
            del self.s["seen"][:-_KEEP_SEEN]
            self._seen = set(self.s["seen"])
        return True

    def _relative(self, path: str) -> str:
        if self.root and path.startswith(self.root):
            return path[len(self.root) :]
        return path

    def state(self) -> dict[str, Any]:
        self.s["files"] = list(self._files)
        return self.s

    def result(self) -> Parsed:
        s = self.state()
        sources = [
            (s["todos_at"], "todo"),
            (s["tasks_at"], "tasks"),
            (s["plan_at"], "plan"),
            (s["summary_at"], "summary"),
        ]
        at, newest = max(sources)
        source: str | None = newest
        tasks: list[str] = []
        doing: list[str] = []
        if at < 0:
            source = None
        elif source == "todo":
            tasks = [c for c, status in s["todos"] if status != "completed"]
            doing = [c for c, status in s["todos"] if status == "in_progress"]
        elif source == "tasks":
            live = [t for t in s["tasks"].values() if t[1] not in ("completed", "deleted")]
            tasks = [t[0] for t in live]
            doing = [t[0] for t in live if t[1] == "in_progress"]
        elif source == "plan":
            tasks = list(s["plan"])
        else:
            tasks = list(s["summary"]["pending"])
            doing = [t for t in tasks if "in progress" in t.lower().replace("_", " ")]
        summary = s["summary"] or {}
        stated: dict[str, Any] = {}
        for part, key in (("open_tasks", source), ("handover", "summary" if summary else None)):
            mark = s["marks"].get(key) if key else None
            if mark:
                stated[part] = {
                    "source": key,
                    "at": mark[0],
                    "after": {
                        "turns": s["turns"] - mark[1],
                        "commands": s["ncommands"] - mark[2],
                        "commits": s["commits"] - mark[3],
                    },
                }
        requests = ([s["first"]] if s["first"] else []) + [
            r for r in s["requests"] if r != s["first"]
        ]
        if not requests and summary.get("request"):
            requests = [summary["request"]]
        return Parsed(
            files_modified=list(s["files"]),
            commands_run=s["commands"][-MAX_COMMANDS:],
            key_decisions=list(s["decisions"]),
            decision_sources=list(s["decisions"].values()),
            open_tasks=tasks,
            tasks_source=source,
            in_progress=doing,
            current_work=summary.get("current_work", ""),
            next_step=summary.get("next_step", ""),
            compactions=s["compactions"],
            compacted_at=s["compacted_at"],
            parent_session=s["parent"],
            git_branch=s["git_branch"],
            cwd=s["cwd"],
            lines=s["lines"],
            skipped=s["skipped"],
            requests=requests,
            title=s["title"],
            closed_tasks=[t for t in s["closed"] if t not in tasks],
            stated=stated,
        )


def _one_line(text: str, width: int = REQUEST_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def parse_transcript(
    path: str | Path, project_root: str | None = None, reader: type[Reader] | None = None
) -> Parsed:
    """Read a whole transcript (Claude Code's, or the agent `reader` reads). A missing or
    unreadable file gives an empty result."""
    r = (reader or Reader)(project_root)
    try:
        with open_regular(path) as f:
            read_lines(r, f.read())
    except OSError:
        pass
    return r.result()


def open_regular(path: str | Path) -> BinaryIO:
    """Open a transcript for reading only if it is a regular file: a FIFO, a device
    (`/dev/zero`), a socket or a folder raises OSError at once instead of blocking the hook or
    feeding it without end (O_NONBLOCK: opening a FIFO with no writer does not wait)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_lines(reader: Reader, data: bytes) -> None:
    if reader.document(data):
        reader.read_document(data)
        return
    for raw in data.split(b"\n"):
        if raw.strip():
            reader.line(raw)


EMPTY = Reader(None).result()  # what a save holds when there is no transcript to read
