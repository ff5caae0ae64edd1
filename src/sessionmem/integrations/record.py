"""What a hook puts in a snapshot beside what the transcript says: the rules that join it to
the session's previous snapshot (lists carried, sources kept, the compaction lineage), the
`[capture]` settings, and when a new body holds nothing the stored one does not
(docs/decisions.md, "What the hooks capture" and "Never empty, never repeated")."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

from ..errors import SessionmemError
from ..project import WORK_FIELDS

if TYPE_CHECKING:
    from ..model import Snapshot
    from ..redact import Redactor
    from .transcript import Parsed

# What says when or why a snapshot was taken, not what it holds; and what changes with every
# turn of talk (stored with the next save that holds new work).
_VOLATILE_META = ("hook", "trigger", "reason", "source", "stated")


def same_content(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a new snapshot body would hold the work the stored `old` holds (its event, the
    hook that took it and the user's latest words aside)."""
    names = (*WORK_FIELDS, "project_path", "git_branch", "git_commit")
    for name in names:
        if (old.get(name) or None) != (new.get(name) or None):
            return False

    def strip(meta: Any) -> dict[str, Any]:
        return {k: v for k, v in as_dict(meta).items() if k not in _VOLATILE_META}

    return strip(old.get("metadata")) == strip(new.get("metadata"))


class Capture(NamedTuple):
    """`[capture]` in config.toml: what the hooks record (docs/decisions.md, "Where the hooks
    write")."""

    commands: bool = True  # shell commands (false: none are stored)
    home: bool = True  # the home folder written as `~`


def capture_settings(section: Any) -> Capture:
    if not isinstance(section, dict):
        raise SessionmemError("config.toml: [capture] must be a table")
    out = Capture()
    for name in Capture._fields:
        value = section.get(name, getattr(out, name))
        if not isinstance(value, bool):
            raise SessionmemError(f"config.toml: [capture] {name} must be true or false")
        out = out._replace(**{name: value})
    unknown = sorted(set(section) - set(Capture._fields))
    if unknown:
        raise SessionmemError(
            f"config.toml: [capture] has no setting {unknown[0]!r} (known: commands, home)"
        )
    return out


def tilde(text: str) -> str:
    """`text` with the home folder written `~` (`/Users/ann/app/x.py` → `~/app/x.py`) where it
    starts a path — not inside another path or a URL (`mysql://root:pw@host` with the home
    `/root` stays as it is)."""
    home = os.path.expanduser("~").rstrip("/")
    if len(home) < 2 or home not in text:
        return text
    return re.sub(r"(?<![\w/.~:@-])" + re.escape(home) + r"(?=/|$|[\s'\"`:;,)\]])", "~", text)


def union(old: Any, new: list[str], *, keep_repeats: bool = False) -> list[str]:
    items = [x for x in (old or []) if isinstance(x, str)]
    if keep_repeats:
        # Commands: the transcript holds the whole session; the previous snapshot's commands are
        # a prefix of it unless the transcript was rotated, so keep only what it lacks.
        return [x for x in items if x not in set(new)] + list(new)
    seen = dict.fromkeys(items)
    for x in new:
        seen.setdefault(x, None)
    return list(seen)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def aligned(sources: Any, items: list[str]) -> TypeGuard[list[Any]]:
    return isinstance(sources, list) and len(sources) == len(items)


def with_sources(
    old: Any, old_sources: Any, new: list[str], new_sources: list[str]
) -> tuple[list[str], list[str]]:
    """The previous snapshot's decisions then the transcript's new ones, each with where it
    came from (a previous one keeps its own source; "earlier" when it had none)."""
    items = [x for x in (old or []) if isinstance(x, str)]
    sources = list(old_sources) if aligned(old_sources, items) else ["earlier"] * len(items)
    seen = set(items)
    for item, source in zip(new, new_sources, strict=False):
        if item not in seen:
            seen.add(item)
            items.append(item)
            sources.append(source)
    return items, sources


def lineage(parsed: Parsed, before: Snapshot | None, meta: dict[str, Any]) -> dict[str, Any]:
    """Which compaction a snapshot follows: how many the transcript holds, when the newest
    was, and the `pre_compact` snapshot saved just before it (carried from snapshot to
    snapshot until the next compaction)."""
    if not parsed.compactions:
        return {}
    out: dict[str, Any] = {"count": parsed.compactions, "at": parsed.compacted_at}
    earlier = as_dict(meta.get("compaction"))
    if (
        before is not None
        and before.event == "pre_compact"
        and earlier.get("count", 0) < parsed.compactions
    ):
        out["after"] = {"snapshot_id": before.snapshot_id, "version": before.version}
    elif earlier.get("count") == parsed.compactions and isinstance(earlier.get("after"), dict):
        out["after"] = earlier["after"]
    return out


def folder_redactor(config: dict[str, Any]) -> Redactor | None:
    """The memory folder's redaction (its `[redact]` section; the built-in rules when that
    section cannot be used — the store refuses it and says why), None when turned off."""
    # lazy: ..redact costs 1.1 ms at start-up
    from ..redact import Redactor, redactor_from_config

    try:
        redact = redactor_from_config(config.get("redact", {}))
    except SessionmemError:
        redact = redactor_from_config({})
    return redact if isinstance(redact, Redactor) else None


def masker(redact: Redactor | None) -> Callable[[str], str]:
    """The redaction as a function of one string (for the files a hook keeps beside the log:
    the reader's state, Cursor's event records — docs/decisions.md, "Nothing derived holds
    more than the log")."""
    return redact.text if redact is not None else (lambda text: text)


def masked(value: Any, mask: Callable[[str], str]) -> Any:
    """`value` with every string in it — dict keys too — passed through `mask`."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [masked(v, mask) for v in value]
    if isinstance(value, dict):
        return {masked(k, mask): masked(v, mask) for k, v in value.items()}
    return value


def redacted(
    redact: Redactor | None, lists: dict[str, list[str]], home: bool
) -> dict[str, list[str]]:
    """The items as the store will hold them: the memory folder's redaction rules (a server
    applies its own, which are the same unless its folder's config.toml differs), then home
    folders written `~` (`[capture]`)."""
    if redact is not None:  # first, on the text as it was: `~` must not hide a credential
        lists = redact(lists)
    if home:
        lists = {k: [tilde(x) for x in v] for k, v in lists.items()}
    return lists
