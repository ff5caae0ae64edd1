"""The agent's own hand-over texts, read by fixed rules (no LLM call; docs/decisions.md, "What the
hooks capture"): Claude Code's compaction summary (the `isCompactSummary` line) and an
`ExitPlanMode` plan.

A compaction summary is numbered Markdown-ish sections — Primary Request and Intent, Key Technical
Concepts, Files and Code Sections, Errors and Fixes, Problem Solving, All User Messages, Pending
Tasks, Current Work, Optional Next Step — whose headings vary a little (`7. Pending Tasks:`,
`## 7. Pending Tasks`, `**Pending Tasks:**`). What is taken:

- Pending Tasks: one open task per top-level item (its sub-items joined to it with "; "), words
  such as "IN PROGRESS" and ids such as "#3" kept; "None" and the like give no task.
- Current Work, Optional Next Step: the section's text on one line (cut to 1,500 characters).
- Decisions: every top-level item of Problem Solving; each item of Errors and Fixes that names
  its fix ("fix", "fixed", "solution", "resolved", "by"+verb is not guessed); and the items of Key
  Technical Concepts that state a choice ("chose", "decided", "instead of", "rather than",
  "prefer", "switched to", "must", "never", "always", "avoid", "do not") — the others name a
  concept, not a decision. At most 15 per summary, each one line of at most 300 characters.
- Primary Request and Intent: its first paragraph, on one line (the session's intent when the
  transcript holds no request the user typed — its start was compacted away).
- Everything else (the files section, the user's messages) is left: files come from the tool
  calls themselves.

What Claude Code appends after the summary — where the full transcript is, "Please continue the
conversation from where we left off…" — is an instruction to that agent, not part of the
hand-over: the text is cut where it starts.
"""

from __future__ import annotations

import re
from typing import NamedTuple

ITEM_CHARS = 300
TEXT_CHARS = 1500
MAX_DECISIONS = 15
MAX_STEPS = 30

_SECTIONS = {
    "primary request and intent": "request",
    "key technical concepts": "concepts",
    "files and code sections": "files",
    "errors and fixes": "errors",
    "problem solving": "solving",
    "all user messages": "messages",
    "pending tasks": "pending",
    "current work": "current",
    "optional next step": "next",
    "next step": "next",
}
_HEADING = re.compile(
    r"^\s{0,3}(?:#{1,6}\s*)?(?:\*\*|__)?\s*(?:\d{1,2}[.)]\s*)?(?:\*\*|__)?\s*"
    r"(" + "|".join(re.escape(k) for k in _SECTIONS) + r")\s*(?:\*\*|__)?\s*:?\s*(?:\*\*|__)?"
    r"\s*(.*)$",
    re.IGNORECASE,
)
_ITEM = re.compile(r"^(\s*)(?:[-*+•]|\d{1,3}[.)])\s+(.*)$")
_NONE = re.compile(
    r"^(?:none\b|n/a\b|nothing\b|no (?:other |remaining |outstanding |explicit |pending )*"
    r"(?:tasks?|work)\b)",
    re.IGNORECASE,
)
_CHOICE = re.compile(
    r"\b(?:chose|chosen|decided|decision|instead of|rather than|prefer(?:s|red)?|switched to|"
    r"opted|settled on|must|never|always|avoid|do not|don't)\b",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"^\s*(?:If you need specific details from before compaction|"
    r"Please continue the conversation from where we left off|"
    r"Continue with the last task that you were asked to work on)",
    re.MULTILINE | re.IGNORECASE,
)
_FIX = re.compile(r"\b(?:fix(?:ed|es)?|solution|solved|resolved|workaround)\b", re.IGNORECASE)


class Handover(NamedTuple):
    """What one compaction summary hands over."""

    pending: list[str]
    current_work: str
    next_step: str
    decisions: list[str]
    request: str


def read_summary(text: str) -> Handover:
    tail = _BOILERPLATE.search(text)
    if tail:
        text = text[: tail.start()]
    sections = _sections(text)
    pending = [i for i in _items(sections.get("pending", [])) if not _NONE.match(i)]
    decisions: dict[str, None] = {}
    for item in _items(sections.get("solving", [])):
        decisions.setdefault(_cut(item), None)
    for item in _items(sections.get("errors", [])):
        if _FIX.search(item):
            decisions.setdefault(_cut(item), None)
    for item in _items(sections.get("concepts", [])):
        if _CHOICE.search(item):
            decisions.setdefault(_cut(item), None)
    return Handover(
        [_cut(p) for p in pending],
        _cut(_flat(sections.get("current", [])), TEXT_CHARS),
        _cut(_flat(sections.get("next", [])), TEXT_CHARS),
        [d for d in decisions if d][:MAX_DECISIONS],
        _cut(_flat("\n".join(sections.get("request", [])).strip().split("\n\n")[0].split())),
    )


def read_plan(text: str) -> list[str]:
    """A plan's steps: its top-level numbered items; else its top-level bullets; else its
    headings below the title."""
    lines = text.splitlines()
    numbered = [ln for ln in lines if re.match(r"^\s*\d{1,3}[.)]\s+\S", ln)]
    steps = _items(lines, only_numbered=bool(numbered))
    if not steps:
        heads = [m.group(2) for ln in lines if (m := re.match(r"^(#{2,4})\s+(.+)$", ln))]
        steps = [h.strip() for h in heads]
    return [_cut(s) for s in steps if s.strip()][:MAX_STEPS]


def _sections(text: str) -> dict[str, list[str]]:
    """The known sections' lines. Only after a line "Summary:" when there is one (the
    "Analysis:" before it is the model's scratch work)."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.strip().strip("*#_ ").rstrip(":").lower() == "summary":
            lines = lines[n + 1 :]
            break
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        m = _HEADING.match(line)
        if m and (not m.group(2) or len(m.group(1)) + len(m.group(2)) < 600):
            name = _SECTIONS[m.group(1).lower()]
            current = out.setdefault(name, [])
            if m.group(2).strip():
                current.append(m.group(2))
            continue
        if current is not None:
            current.append(line)
    return out


def _items(lines: list[str], *, only_numbered: bool = False) -> list[str]:
    """Top-level list items (the least indented), each with its sub-items and continuation
    lines joined to it; a section with no list is one item per paragraph."""
    found = [
        (len(m.group(1).expandtabs()), n) for n, ln in enumerate(lines) if (m := _ITEM.match(ln))
    ]
    if only_numbered:
        found = [(i, n) for i, n in found if re.match(r"^\s*\d", lines[n])]
    if not found:
        paragraphs = "\n".join(lines).split("\n\n")
        return [p for p in (_flat(x.splitlines()) for x in paragraphs) if p]
    top = min(indent for indent, _ in found)
    starts = [n for indent, n in found if indent == top]
    items = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        m = _ITEM.match(lines[start])
        assert m is not None
        parts = [m.group(2).strip()]  # the item, then each sub-item (continuations joined)
        for line in lines[start + 1 : end]:
            sub = _ITEM.match(line)
            text = (sub.group(2) if sub else line).strip()
            if not text or re.match(r"^#{1,6}\s", text):
                continue
            if sub or len(parts) == 1 and not parts[0]:
                parts.append(text)
            else:
                parts[-1] += " " + text
        head, subs = parts[0], [p for p in parts[1:] if p]
        if subs:
            head = (head if head.endswith(":") else head + ":") + " " + "; ".join(subs)
        items.append(_flat([head]))
    return [i for i in items if i]


def _flat(lines: list[str]) -> str:
    return " ".join(" ".join(lines).split())


def _cut(text: str, width: int = ITEM_CHARS) -> str:
    text = " ".join(text.split()).strip()
    for strip in ("**", "__"):
        if text.startswith(strip) and text.count(strip) == 2 and text.endswith(strip):
            text = text[len(strip) : -len(strip)]
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut[width // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut + "…"
