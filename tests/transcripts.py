"""Claude Code transcript lines built by hand, following the format in docs/decisions.md ("What
the hooks capture"): for compactions, which none of the real transcripts in data/ holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SESSION = "7a1c0d2e-0b4f-4c1e-9d3a-5e6f7a8b9c0d"
_n = [0]


def _base(kind: str, session: str = SESSION, **extra: Any) -> dict[str, Any]:
    _n[0] += 1
    return {
        "type": kind,
        "uuid": f"u{_n[0]}",
        "isSidechain": False,
        "cwd": "/w/app",
        "sessionId": session,
        "gitBranch": "main",
        "timestamp": f"2026-11-30T10:{_n[0] // 60 % 60:02d}:{_n[0] % 60:02d}.000Z",
        **extra,
    }


def user(text: str, **kw: Any) -> dict[str, Any]:
    return _base("user", message={"role": "user", "content": text}, **kw)


def tool(name: str, data: dict[str, Any], use_id: str | None = None, **kw: Any) -> dict[str, Any]:
    use_id = use_id or f"toolu_{_n[0] + 1}"
    block = {"type": "tool_use", "id": use_id, "name": name, "input": data}
    return _base(
        "assistant", message={"id": f"msg_{use_id}", "role": "assistant", "content": [block]}, **kw
    )


def result(use_id: str, text: str, *, error: bool = False, extra: Any = None) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": use_id, "content": text, "is_error": error}
    line = _base("user", message={"role": "user", "content": [block]})
    if extra is not None:
        line["toolUseResult"] = extra
    return line


def todos(*items: tuple[str, str]) -> dict[str, Any]:
    return tool(
        "TodoWrite", {"todos": [{"content": c, "status": s, "activeForm": c} for c, s in items]}
    )


def compaction(summary: str, trigger: str = "auto") -> list[dict[str, Any]]:
    """The two lines a compaction leaves: the boundary, then Claude's summary."""
    boundary = _base("system", subtype="compact_boundary", content="Conversation compacted",
                     compactMetadata={"trigger": trigger, "preTokens": 150_000})  # fmt: skip
    text = (
        "This session is being continued from a previous conversation that ran out of context. "
        "The conversation is summarized below:\n" + summary
    )
    return [boundary, user(text, isCompactSummary=True, isVisibleInTranscriptOnly=True)]


def summary(
    pending: list[str], current: str, next_step: str, *, solving: tuple[str, ...] = ()
) -> str:
    lines = [
        "Analysis:",
        "Chronologically: the user asked for limits. 7. Pending Tasks: (analysis, not a section)",
        "",
        "Summary:",
        "1. Primary Request and Intent:",
        "   Add rate limiting to the API.",
        "",
        "2. Key Technical Concepts:",
        "   - FastAPI middleware",
        "   - A token bucket, chosen instead of a fixed window to allow bursts",
        "",
        "3. Files and Code Sections:",
        "   - src/app/limits.py",
        "      - the bucket",
        "",
        "4. Errors and fixes:",
        "   - ImportError for redis in CI:",
        "      - Fixed by making the backend optional.",
        "   - A flaky timing test: left for later.",
        "",
        "5. Problem Solving:",
        *[f"   - {s}" for s in solving],
        "",
        "6. All User Messages:",
        '   - "add rate limiting"',
        "",
        "7. Pending Tasks:",
        *([f"   - {p}" for p in pending] or ["   - None."]),
        "",
        "8. Current Work:",
        f"   {current}",
        "",
        "9. Optional Next Step:",
        f"   {next_step}",
    ]
    return "\n".join(lines)


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
