"""`sessionmem install claude-code`: merge our hook entries into Claude Code's settings file.

It keeps every other key and hook, is idempotent, and `--uninstall` removes exactly what it added
(our handlers, and the groups and events that held nothing else). A handler is ours when its
command runs `sessionmem ... hook claude-code` from anywhere: installing again with another path
(a moved clone, a new virtualenv) updates it in place. Timeouts follow Claude Code's hook
documentation (docs/decisions.md, "Agent hooks").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import FieldError, InvalidInput

HOOK_COMMAND = "sessionmem hook claude-code"
SYNC_FLAG = " --sync"  # `install AGENT --sync`: the hook syncs after a session (docs/sync.md)
ENTRIES: dict[str, tuple[str | None, int]] = {
    "PreCompact": (None, 30),
    "SessionStart": ("startup|resume|clear|compact", 15),
    "SessionEnd": (None, 10),
}
STOP_ENTRY = ("Stop", None, 10)
SCOPES = {
    "project": ".claude/settings.json",
    "local": ".claude/settings.local.json",
}


def claude_md_line(cli: str = "sessionmem") -> str:
    return (
        f'When you make an important decision, record it with `{cli} save --merge --decision "..."`'
        " so the next session knows it."
    )


CLAUDE_MD_LINE = claude_md_line()


# Each other agent's hook file (docs/decisions.md, "Other agents"): its folder, its file, and
# its entries — event -> (matcher, timeout in the agent's unit: Gemini counts milliseconds).
OTHER_AGENTS: dict[str, tuple[str, str, dict[str, tuple[str | None, int]]]] = {
    "codex": (
        ".codex",
        "hooks.json",
        {"SessionStart": ("startup|resume|clear|compact", 15), "PreCompact": (None, 30),
         "Stop": (None, 10)},
    ),
    "gemini": (
        ".gemini",
        "settings.json",
        {"SessionStart": ("startup|resume|clear", 15_000), "PreCompress": (None, 30_000),
         "SessionEnd": (None, 10_000), "AfterAgent": (None, 10_000)},
    ),
    "cursor": (
        ".cursor",
        "hooks.json",
        dict.fromkeys(("sessionStart", "preCompact", "sessionEnd", "stop", "afterFileEdit",
                       "afterShellExecution"), (None, 0)),
    ),
}  # fmt: skip


def settings_path(
    scope: str, project: Path, home: Path | None = None, agent: str = "claude-code"
) -> Path:
    if agent in OTHER_AGENTS:
        folder, name, _ = OTHER_AGENTS[agent]
        if scope not in ("project", "user"):
            raise InvalidInput(FieldError("scope", f"must be project or user for {agent}."))
        return ((home or Path.home()) if scope == "user" else project) / folder / name
    if scope == "user":
        return (home or Path.home()) / ".claude" / "settings.json"
    if scope not in SCOPES:
        raise InvalidInput(FieldError("scope", "must be project, local or user."))
    return project / SCOPES[scope]


class Number(str):
    """A JSON number as the file wrote it: written back byte for byte (a float would turn
    18446744073709551616 into 1.8446744073709552e+19 and shorten long decimals)."""


def read_settings(path: Path) -> dict[str, Any]:
    """An agent's JSON settings, every value as written. A file that is not a JSON object, or
    an object with a key twice (which a rewrite would collapse), is refused: nothing changes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    if not raw.strip():
        return {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise InvalidInput(
                    FieldError(
                        str(path),
                        f"has the key {key!r} twice in one object; a rewrite would keep only "
                        "one: fix it first, nothing was changed.",
                    )
                )
            out[key] = value
        return out

    try:
        settings = json.loads(
            raw.decode("utf-8"), object_pairs_hook=pairs, parse_int=Number, parse_float=Number,
            parse_constant=_no_constant,
        )  # fmt: skip
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(
            FieldError(str(path), f"is not valid JSON ({exc}); fix it first, nothing was changed.")
        ) from None
    if not isinstance(settings, dict):
        raise InvalidInput(FieldError(str(path), "must hold a JSON object; nothing was changed."))
    return settings


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _dump(value: Any, indent: str = "") -> str:
    """JSON with two-space indentation, numbers exactly as they were read."""
    inner = indent + "  "
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dump(v, inner)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + _dump(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


def target_of(path: Path) -> Path:
    """Where writing `path` lands: a link's target (the user's own file, kept where it is)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _save(path: Path, settings: dict[str, Any]) -> None:
    """Write the settings atomically — through a link to its target, keeping the file's mode
    (a 0600 file holding a key stays 0600); a read-only file is refused."""
    target = target_of(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    if mode is not None and not mode & 0o200:
        raise InvalidInput(
            FieldError(
                str(target), "is read-only; make it writable to install, nothing was changed."
            )
        )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode if mode is not None else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(_dump(settings).encode() + b"\n")
    if mode is not None:
        os.chmod(tmp, mode)  # (the umask narrowed the create)
    os.replace(tmp, target)


def _ours(handler: Any, command: str = HOOK_COMMAND) -> bool:
    """Is this handler sessionmem's hook for the same agent (whatever path runs it)?"""
    if not isinstance(handler, dict) or not isinstance(handler.get("command"), str):
        return False
    agent = command.rsplit(" hook ", 1)[-1].removesuffix(SYNC_FLAG)
    text = handler["command"].removesuffix(SYNC_FLAG)  # (with or without the background sync)
    return "sessionmem" in text and text.endswith(f" hook {agent}")


def install(
    path: Path,
    *,
    command: str = HOOK_COMMAND,
    stop: bool = False,
    entries: dict[str, tuple[str | None, int]] | None = None,
) -> list[str]:
    """Add our entries (Claude Code's, or `entries` in the same shape: Codex, Gemini CLI);
    returns the events it added (empty when all were already there)."""
    settings = read_settings(path)
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InvalidInput(FieldError(f"{path}: hooks", "must be an object; nothing was changed."))
    wanted = [(e, matcher, timeout) for e, (matcher, timeout) in (entries or ENTRIES).items()]
    if stop and entries is None:
        wanted.append(STOP_ENTRY)
    added = []
    for event, matcher, timeout in wanted:
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise InvalidInput(FieldError(f"{path}: hooks.{event}", "must be a list."))
        present = [
            h
            for g in groups
            if isinstance(g, dict) and isinstance(g.get("hooks"), list)
            for h in g["hooks"]
            if _ours(h, command)
        ]
        if present:
            for h in present:
                if h["command"] != command:  # installed from elsewhere before: point it here
                    h["command"] = command
                    added.append(event)
            continue
        group: dict[str, Any] = {}
        if matcher:
            group["matcher"] = matcher
        group["hooks"] = [{"type": "command", "command": command, "timeout": timeout}]
        groups.append(group)
        added.append(event)
    if added:
        _save(path, settings)
    return added


def uninstall(path: Path, *, command: str = HOOK_COMMAND) -> list[str]:
    """Remove our handlers, and the groups and events left empty by that. Returns the events."""
    settings = read_settings(path)
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return []
    removed = []
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept_groups = []
        for group in groups:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(handlers, list) or not any(_ours(h, command) for h in handlers):
                kept_groups.append(group)
                continue
            rest = [h for h in handlers if not _ours(h, command)]
            removed.append(event)
            if rest:
                kept_groups.append({**group, "hooks": rest})
        if kept_groups:
            hooks[event] = kept_groups
        elif event in removed:
            del hooks[event]
    if not hooks and removed:
        del settings["hooks"]
    if removed:
        _save(path, settings)
    return sorted(set(removed))


MCP_FILE = ".mcp.json"  # the project's MCP servers, committed, read by Claude Code


def install_mcp(path: Path, executable: list[str]) -> bool:
    """Register `sessionmem mcp` as the server "sessionmem" in a `.mcp.json` (every other
    server and key kept; run again from elsewhere, it points the entry here). Returns whether
    the file changed."""
    settings = read_settings(path)
    servers = settings.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise InvalidInput(FieldError(f"{path}: mcpServers", "must be an object; nothing changed."))
    wanted = {"command": executable[0], "args": [*executable[1:], "mcp"]}
    current = servers.get("sessionmem")
    if isinstance(current, dict) and {k: current.get(k) for k in wanted} == wanted:
        return False
    servers["sessionmem"] = {**(current if isinstance(current, dict) else {}), **wanted}
    _save(path, settings)
    return True


def uninstall_mcp(path: Path) -> bool:
    """Remove the server "sessionmem" (and `mcpServers` if it held nothing else)."""
    settings = read_settings(path)
    servers = settings.get("mcpServers")
    if not isinstance(servers, dict) or "sessionmem" not in servers:
        return False
    del servers["sessionmem"]
    if not servers:
        del settings["mcpServers"]
    _save(path, settings)
    return True


def install_cursor(path: Path, command: str) -> list[str]:
    """Cursor's `hooks.json` (`{"version": 1, "hooks": {event: [{"command": ...}]}}`): add our
    command to each event, as `install` does for the others."""
    settings = read_settings(path)
    settings.setdefault("version", 1)
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InvalidInput(FieldError(f"{path}: hooks", "must be an object; nothing was changed."))
    added = []
    for event in OTHER_AGENTS["cursor"][2]:
        handlers = hooks.setdefault(event, [])
        if not isinstance(handlers, list):
            raise InvalidInput(FieldError(f"{path}: hooks.{event}", "must be a list."))
        present = [h for h in handlers if _ours(h, command)]
        for h in present:
            if h["command"] != command:
                h["command"] = command
                added.append(event)
        if not present:
            handlers.append({"command": command})
            added.append(event)
    if added:
        _save(path, settings)
    return added


def uninstall_cursor(path: Path, command: str) -> list[str]:
    settings = read_settings(path)
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return []
    removed = []
    for event in list(hooks):
        handlers = hooks[event]
        if not isinstance(handlers, list) or not any(_ours(h, command) for h in handlers):
            continue
        removed.append(event)
        rest = [h for h in handlers if not _ours(h, command)]
        if rest:
            hooks[event] = rest
        else:
            del hooks[event]
    if not hooks and removed:
        del settings["hooks"]
        if settings.get("version") == 1 and len(settings) == 1:
            del settings["version"]
    if removed:
        _save(path, settings)
    return sorted(removed)
