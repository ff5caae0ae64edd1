"""The other agents' transcripts, read into the same words as Claude Code's (`transcript.Reader`:
files, commands, decisions, task lists, compactions), so one set of rules captures every agent
(docs/decisions.md, "Other agents"). Formats are in the agents' own code and docs; every record
is read defensively, and one that is not understood is skipped.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from .transcript import Reader

_PATCH_FILE = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (.+?)\s*$", re.MULTILINE)
_PATCH_MOVE = re.compile(r"^\*\*\* Move to: (.+?)\s*$", re.MULTILINE)


def patch_files(patch: str) -> list[str]:
    """The files an `apply_patch` patch touches: added, updated, deleted, and moved to."""
    found = [m.group(1) for m in _PATCH_FILE.finditer(patch)]
    found += [m.group(1) for m in _PATCH_MOVE.finditer(patch)]
    return list(dict.fromkeys(found))


def _args(raw: Any) -> dict[str, Any]:
    """A tool call's arguments: a JSON object, or a JSON string holding one."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return {}
    return raw if isinstance(raw, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _shell(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        if len(value) >= 3 and value[0] in ("bash", "sh", "zsh") and value[1] in ("-c", "-lc"):
            return str(value[2])  # Codex's ["bash", "-lc", "the command"]
        return shlex.join(value)
    return value if isinstance(value, str) else None


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or the text of its parts (`{"text": ...}` blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [str(b["text"]) for b in content if isinstance(b, dict) and b.get("text")]
        return "\n".join(texts) or None
    return None


class CodexReader(Reader):
    """Codex CLI rollouts: `{timestamp, type, payload}` lines (`session_meta`, `turn_context`,
    `response_item`, `event_msg`, `compacted`)."""

    agent = "codex"
    SHELL = ("exec_command", "shell", "local_shell", "container.exec", "shell_command")

    def record(self, rec: dict[str, Any]) -> None:
        kind, p = rec.get("type"), rec.get("payload")
        if not isinstance(p, dict):
            return
        if kind == "session_meta":
            git = _dict(p.get("git"))
            self.where(git.get("branch"), p.get("cwd"))
            if isinstance(p.get("id"), str) and self.s["session"] is None:
                self.s["session"] = p["id"]
        elif kind == "turn_context":
            self.where(None, p.get("cwd"))
        elif kind == "compacted":
            self.compaction(rec.get("timestamp"))
        elif kind == "event_msg" and p.get("type") == "user_message":
            self.request(p.get("message"))  # (the response_item copy also holds injected text)
        elif kind == "response_item":
            self._item(p, str(rec.get("timestamp")))

    def _item(self, p: dict[str, Any], when: str) -> None:
        ptype, name = p.get("type"), p.get("name")
        key = str(p.get("call_id") or p.get("id") or when)
        if ptype == "message" and p.get("role") == "assistant":
            content = p.get("content")
            for n, block in enumerate(content if isinstance(content, list) else []):
                if isinstance(block, dict):
                    self.text(block.get("text"), f"{key}:{n}")
            return
        if ptype not in ("function_call", "custom_tool_call", "local_shell_call"):
            return
        if not self._first_time(f"call:{key}"):
            return
        if ptype == "local_shell_call":
            action = _dict(p.get("action"))
            self.command(_shell(action.get("command")))
            return
        args = _args(p.get("arguments"))
        if name == "apply_patch":
            patch = p.get("input") if ptype == "custom_tool_call" else args.get("input")
            for path in patch_files(patch) if isinstance(patch, str) else []:
                self.file(path)
        elif name in self.SHELL:
            self.command(_shell(args.get("cmd", args.get("command"))))
        elif name == "update_plan":
            plan = args.get("plan")
            if isinstance(plan, list):
                self.todos([(s.get("step"), s.get("status")) for s in plan if isinstance(s, dict)])


class GeminiReader(Reader):
    """Gemini CLI sessions: the JSONL of current versions (a metadata line, then one record per
    message) and the older single JSON document (`{sessionId, ..., messages: [...]}`)."""

    agent = "gemini"
    FILE_TOOLS = ("write_file", "replace", "edit", "edit_file", "smart_edit")
    SHELL_TOOLS = ("run_shell_command", "shell")

    @staticmethod
    def document(data: bytes) -> bool:
        head = data.lstrip()[:1]
        if head != b"{":
            return False
        first = data.lstrip().split(b"\n", 1)[0]
        try:
            json.loads(first)
        except (ValueError, RecursionError):
            return True  # a pretty-printed document: its first line is not a whole object
        return b'"messages"' in first  # one line holding the whole document

    def read_document(self, data: bytes) -> None:
        self.s["lines"] += 1
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            self.s["skipped"] += 1
            return
        messages = doc.get("messages") if isinstance(doc, dict) else None
        for message in messages if isinstance(messages, list) else []:
            self.s["at"] += 1
            if isinstance(message, dict):
                self.clock(message.get("timestamp"))
                self.record(message)

    def record(self, rec: dict[str, Any]) -> None:
        if rec.get("type") == "user":
            self.request(_text_of(rec.get("content")))
            return
        if rec.get("type") != "gemini":
            return
        key = str(rec.get("id") or rec.get("timestamp"))
        content = rec.get("content")
        if isinstance(content, str):
            self.text(content, key)
        calls = rec.get("toolCalls")
        for call in calls if isinstance(calls, list) else []:
            if not isinstance(call, dict) or not self._first_time(f"call:{call.get('id')}"):
                continue
            if call.get("status") not in (None, "success"):
                continue  # a call that failed or was cancelled changed nothing
            name, args = call.get("name"), _args(call.get("args"))
            if name in self.FILE_TOOLS:
                self.file(args.get("file_path") or args.get("path"))
            elif name in self.SHELL_TOOLS:
                self.command(args.get("command"))
            elif name in ("write_todos", "todo_write"):
                todos = args.get("todos")
                if isinstance(todos, list):
                    self.todos(
                        [
                            (t.get("description") or t.get("content"), t.get("status"))
                            for t in todos
                            if isinstance(t, dict)
                        ]
                    )


class CursorReader(Reader):
    """Cursor agent transcripts: `{"role", "message": {"content": [...]}}` lines whose tool_use
    blocks name files by `path`."""

    agent = "cursor"
    FILE_TOOLS = ("Write", "StrReplace", "Delete", "Edit", "MultiEdit", "edit_file", "write")
    SHELL_TOOLS = ("Shell", "run_terminal_cmd", "Bash", "terminal")

    def record(self, rec: dict[str, Any]) -> None:
        if rec.get("role") == "user":
            self.request(_text_of(_dict(rec.get("message")).get("content", rec.get("content"))))
            return
        if rec.get("role") != "assistant":
            return
        message = _dict(rec.get("message")) or rec
        content = message.get("content")
        for n, block in enumerate(content if isinstance(content, list) else []):
            if not isinstance(block, dict):
                continue
            key = str(block.get("id") or f"{self.s['at']}:{n}")
            if block.get("type") == "text":
                self.text(block.get("text"), key)
            elif block.get("type") == "tool_use" and self._first_time(f"call:{key}"):
                name, data = block.get("name"), _args(block.get("input"))
                if name in self.FILE_TOOLS:
                    self.file(data.get("path") or data.get("file_path"))
                elif name in self.SHELL_TOOLS:
                    self.command(data.get("command"))
                elif name in ("TodoWrite", "todo_write"):
                    todos = data.get("todos")
                    if isinstance(todos, list):
                        self.todos(
                            [
                                (t.get("content"), t.get("status"))
                                for t in todos
                                if isinstance(t, dict)
                            ]
                        )


READERS: dict[str, type[Reader]] = {
    "claude-code": Reader,
    "codex": CodexReader,
    "gemini": GeminiReader,
    "cursor": CursorReader,
}
