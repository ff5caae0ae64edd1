"""`sessionmem status`: whether memory works here, at a glance — where the hooks keep memory for
this project, which agents' hooks are installed (per scope) and whether their commands resolve,
the hooks' last runs, and the snapshot the next briefing comes from."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from ..errors import SessionmemError
from .install import OTHER_AGENTS, read_settings, settings_path

AGENT_SCOPES = {
    "claude-code": ("project", "local", "user"),
    **{agent: ("project", "user") for agent in OTHER_AGENTS},
}
# What each agent needs beyond its hook file (docs/decisions.md, "Other agents").
NEEDS = {
    "claude-code": "nothing more: Claude Code reads .claude/settings.json at start "
    "(`/hooks` lists what it loaded).",
    "codex": "Codex runs a hook only once you trust it: open `/hooks` in Codex and trust "
    "sessionmem's (again after any change); a project's .codex/ hooks load only in a trusted "
    "project, and `codex exec` fires no lifecycle hooks.",
    "gemini": "nothing more: Gemini CLI reads .gemini/settings.json at start "
    "(`/hooks` lists them).",
    "cursor": "Cursor reads .cursor/hooks.json at start; restart Cursor after installing.",
}


def installed_hooks(project: Path, home: Path | None = None) -> list[dict[str, Any]]:
    """Every agent's hook file in each scope, with sessionmem's events there and whether its
    command resolves to an executable."""
    found = []
    for agent, scopes in AGENT_SCOPES.items():
        for scope in scopes:
            path = settings_path(scope, project, home, agent)
            entry: dict[str, Any] = {"agent": agent, "scope": scope, "path": str(path)}
            try:
                settings = read_settings(path) if path.exists() else None
            except (SessionmemError, OSError) as exc:
                entry.update(installed=False, problem=str(exc))
                found.append(entry)
                continue
            events: dict[str, str] = {}
            hooks = settings.get("hooks") if isinstance(settings, dict) else None
            for event, value in (hooks or {}).items() if isinstance(hooks, dict) else []:
                for command in _commands(value):
                    if "sessionmem" in command and f"hook {agent}" in command:
                        events[str(event)] = command
            entry["installed"] = bool(events)
            if events:
                command = next(iter(events.values()))
                entry.update(events=sorted(events), command=command, resolves=resolves(command))
            found.append(entry)
    return found


def _commands(value: Any) -> list[str]:
    """Every `command` string under a hook file's event entry, however it nests them."""
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("command"), str):
                out.append(item["command"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


def resolves(command: str) -> bool:
    """Whether the command's program is an executable file (an absolute path) or on PATH."""
    try:
        program = shlex.split(command)[0]
    except (ValueError, IndexError):
        return False
    if os.sep in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program) is not None


def last_runs(log: Path, n: int = 5) -> list[str]:
    """The last `n` lines of hooks.log (what the hooks did, and why nothing was stored)."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return lines[-n:]
