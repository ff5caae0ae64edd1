"""Reading a Claude Code transcript (`transcript_path`) into snapshot fields, deterministically and
with no LLM call. The format is not officially documented, so every line is read defensively: a
line that is not understood is skipped, never fatal.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

MAX_COMMANDS = 50  # most recent last
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


@dataclass
class _Task:
    subject: str
    status: str = "pending"


@dataclass
class Parsed:
    files_modified: list[str] = field(default_factory=list)
    commands_run: list[str] = field(default_factory=list)
    key_decisions: list[str] = field(default_factory=list)
    open_tasks: list[str] = field(default_factory=list)
    task_list_seen: bool = False  # a TodoWrite or Task* call was seen (an empty list is news)
    git_branch: str | None = None
    cwd: str | None = None
    lines: int = 0
    skipped: int = 0


class _Reader:
    def __init__(self, project_root: str | None):
        self.root = project_root.rstrip("/") + "/" if project_root else None
        self.out = Parsed()
        self._files: dict[str, None] = {}
        self._decisions: dict[str, None] = {}
        self._seen_blocks: set[str] = set()
        self._todos: list[dict[str, Any]] | None = None
        self._tasks: dict[str, _Task] = {}
        self._pending_creates: dict[str, _Task] = {}  # tool_use_id -> task awaiting its id
        self._source = "none"  # which tool last described the task list

    def line(self, raw: bytes) -> None:
        self.out.lines += 1
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.out.skipped += 1  # e.g. a truncated last line
            return
        if not isinstance(rec, dict) or rec.get("isSidechain") or rec.get("isMeta"):
            return
        if isinstance(rec.get("gitBranch"), str) and rec["gitBranch"]:
            self.out.git_branch = rec["gitBranch"]
        if isinstance(rec.get("cwd"), str):
            self.out.cwd = rec["cwd"]
        kind = rec.get("type")
        message = rec.get("message")
        if not isinstance(message, dict):
            return
        content = message.get("content")
        if not isinstance(content, list):
            return
        if kind == "assistant":
            for n, block in enumerate(content):
                if isinstance(block, dict):
                    self._assistant_block(block, f"{message.get('id')}:{n}")
        elif kind == "user":
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    self._tool_result(block, rec.get("toolUseResult"))

    def _assistant_block(self, block: dict[str, Any], fallback_key: str) -> None:
        btype = block.get("type")
        if btype == "text":
            text = block.get("text")
            key = f"text:{fallback_key}:{hash(text)}"
            if isinstance(text, str) and key not in self._seen_blocks:
                self._seen_blocks.add(key)
                for m in _DECISION.finditer(text):
                    self._decisions.setdefault(m.group(1).rstrip("*_ "), None)
            return
        if btype != "tool_use":
            return
        use_id = str(block.get("id") or fallback_key)
        if use_id in self._seen_blocks:
            return  # the same block written twice (lines that share message.id)
        self._seen_blocks.add(use_id)
        name = block.get("name")
        data = block.get("input")
        if not isinstance(data, dict):
            return
        if name in _FILE_TOOLS:
            path = data.get(_FILE_TOOLS[str(name)])
            if isinstance(path, str) and path:
                self._files.setdefault(self._relative(path), None)
        elif name in _SHELL_TOOLS:
            command = data.get("command")
            if isinstance(command, str) and command.strip():
                self.out.commands_run.append(command)
                self._decisions_from_command(command)
        elif name == "TodoWrite":
            todos = data.get("todos")
            if isinstance(todos, list):
                self._todos = [t for t in todos if isinstance(t, dict)]
                self._source = "todo"
        elif name == "TaskCreate":
            subject = data.get("subject") or data.get("description")
            if isinstance(subject, str) and subject:
                task = _Task(subject)
                # Its id arrives with the result; until then, assume the next number.
                self._tasks[str(len(self._tasks) + 1)] = task
                self._pending_creates[use_id] = task
                self._source = "task"
        elif name == "TaskUpdate":
            found = self._tasks.get(str(data.get("taskId", "")))
            if found is not None:
                if isinstance(data.get("status"), str):
                    found.status = data["status"]
                if isinstance(data.get("subject"), str) and data["subject"]:
                    found.subject = data["subject"]
                self._source = "task"

    def _tool_result(self, block: dict[str, Any], extra: Any) -> None:
        task = self._pending_creates.pop(str(block.get("tool_use_id")), None)
        if task is None:
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
        if real_id is None:
            return
        for key, value in list(self._tasks.items()):
            if value is task and key != real_id:
                del self._tasks[key]
                self._tasks[real_id] = task

    def _decisions_from_command(self, command: str) -> None:
        if "sessionmem" not in command or "--decision" not in command:
            return
        try:
            words = shlex.split(command)
        except ValueError:
            return
        for i, word in enumerate(words):
            if word == "--decision" and i + 1 < len(words):
                self._decisions.setdefault(words[i + 1], None)
            elif word.startswith("--decision="):
                self._decisions.setdefault(word.split("=", 1)[1], None)

    def _relative(self, path: str) -> str:
        if self.root and path.startswith(self.root):
            return path[len(self.root) :]
        return path

    def result(self) -> Parsed:
        out = self.out
        out.files_modified = list(self._files)
        out.commands_run = out.commands_run[-MAX_COMMANDS:]
        out.key_decisions = list(self._decisions)
        out.task_list_seen = self._source != "none"
        if self._source == "todo" and self._todos is not None:
            out.open_tasks = [
                str(t.get("content"))
                for t in self._todos
                if t.get("status") != "completed" and t.get("content")
            ]
        elif self._source == "task":
            out.open_tasks = [
                t.subject for t in self._tasks.values() if t.status not in ("completed", "deleted")
            ]
        return out


def parse_transcript(path: str | Path, project_root: str | None = None) -> Parsed:
    """Read a transcript. A missing or unreadable file gives an empty result."""
    reader = _Reader(project_root)
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    reader.line(raw)
    except OSError:
        pass
    return reader.result()
