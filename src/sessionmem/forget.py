"""Forgetting (docs/decisions.md, "Forgetting"): `forget SESSION`, `forget --text STRING` and
`prune` take lines out of the log for good, unlike `DELETE`, which only hides a session.

Each one holds the writer lock of every log file of the user (sorted, so two never wait on each
other), appends an erase record (`erase`: ids and hashes only) and rewrites the files without
the lines — each atomically, a temporary file renamed over it — and then removes what was
derived from them (the search index, the projection cache, the hooks' files that name them).
A reader folding at that moment finds its file replaced and folds it again.

Removals write the record first: once it is on disk no reader shows the lines, and if the
process dies before the files are rewritten, the next write or `verify --repair` removes them.
`--text` rewrites first (a record first would hide the events until their new lines exist), then
writes the record: a forget killed between the two is run again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import erase
from .codec import DecodeError, decode, encode, id_hash, ms_to_ts, now_ms, uuid7
from .errors import FieldError, InvalidInput, NotFound, StorageError
from .githistory import committed_ids, filter_repo_hint
from .layout import ERASED_ATTRIBUTES, check_user
from .log import fsync_dir, touch_folder
from .rules import check_session_id

if TYPE_CHECKING:
    from .store import Store

REDACTED = "[REDACTED]"
MIN_TEXT = 4  # a shorter string is in too many places to be a secret
# Decide what becomes of one line: None keeps it, b"" drops it, other bytes replace it.
Decide = Callable[[bytes, Any], bytes | None]


class Forgotten:
    """What a forget or a prune did. (A plain class: the dataclasses module would cost every
    command that opens a store ~7 ms of start-up.)"""

    def __init__(self, events: int = 0, record: str | None = None):
        self.events = events  # lines taken out or rewritten
        self.files: list[str] = []  # log files rewritten
        self.record = record  # the erase record's id
        self.derived: list[str] = []  # derived files removed or scrubbed
        self.committed: list[str] = []  # commits that hold erased bytes
        self.filter_repo: str | None = None  # how to take them out of git's history too

    def __repr__(self) -> str:
        return f"Forgotten({self.view()})"

    def answer(self, session_id: str) -> dict[str, Any]:
        """What `POST /session/{id}/forget` answers (no paths of the server's disk)."""
        return {
            "session_id": session_id,
            "forgotten": True,
            "events": self.events,
            "record": self.record,
            "committed": self.committed,
        }

    def view(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "files": self.files,
            "record": self.record,
            "derived": self.derived,
            "committed": self.committed,
            "filter_repo": self.filter_repo,
        }


def forget_session(store: Store, user: str, session_id: str) -> Forgotten:
    """Take every event of `session_id` out of `user`'s log and everything derived."""
    check_user(user)
    check_session_id(session_id)
    needle = b'"session_id":' + orjson.dumps(session_id)

    def decide(line: bytes, ev: Any) -> bytes | None:
        if ev is not None:
            return b"" if ev.session_id == session_id else None
        return b"" if needle in line else None  # a damaged line of it goes too

    record = {"why": "forget", "session": erase.session_hash(session_id)}
    done = _erase(store, user, decide, record, needle=orjson.dumps(session_id))
    if done.record is None:
        raise NotFound(f"No session {session_id!r} for user {user!r}.", what="session")
    done.derived = _scrub(store, user, [needle, orjson.dumps(session_id)[1:-1]], drop=True)
    return done


def forget_text(store: Store, text: str) -> Forgotten:
    """Replace `text` with [REDACTED] in every stored event of every user here."""
    check_text(text)
    escaped = orjson.dumps(text)[1:-1]

    def decide(line: bytes, ev: Any) -> bytes | None:
        if escaped not in line:
            return None
        if ev is None:  # damaged: replace the bytes themselves
            return line.replace(escaped, REDACTED.encode())
        return encode(ev._replace(data=redact_text(ev.data, text)))

    total = Forgotten()
    for user in store.users():
        record = {"why": "forget-text", "text": erase.text_hash(text)}
        done = _erase(store, user, decide, record, needle=escaped)
        total.events += done.events
        total.files += done.files
        total.record = done.record or total.record
        total.committed += done.committed
        if done.events:
            total.derived += _drop_indexes(store, user)
    total.derived += _scrub(store, None, [escaped, text.encode()], drop=False)
    if total.committed:
        total.filter_repo = (
            "printf '%s==>[REDACTED]\\n' 'THE-STRING' > expressions.txt && "
            "git filter-repo --replace-text expressions.txt  (in a fresh clone; then delete "
            "expressions.txt, force-push, and have every clone fetch the rewrite)"
        )
    return total


def prune(
    store: Store, user: str, *, keep_versions: int | None = None, older_than_ms: int | None = None
) -> Forgotten:
    """Erase each session's older snapshots: beyond the newest `keep_versions`, or older than
    `older_than_ms` ago. A session's newest snapshot and every tombstone are always kept."""
    check_user(user)
    check_prune(keep_versions, older_than_ms)
    cutoff = now_ms() - older_than_ms if older_than_ms is not None else None
    doomed: set[str] = set()

    def plan(events: list[Any]) -> None:
        by_session: dict[str, list[Any]] = {}
        for ev in events:
            if ev.type == "snapshot":
                by_session.setdefault(ev.session_id, []).append(ev)
        for snaps in by_session.values():
            snaps.sort(key=lambda e: (e.ts_ms, e.writer, e.seq, e.id), reverse=True)
            for i, ev in enumerate(snaps[1:], 1):  # the newest is kept
                if (keep_versions is not None and i >= keep_versions) or (
                    cutoff is not None and ev.ts_ms < cutoff
                ):
                    doomed.add(ev.id)

    def decide(line: bytes, ev: Any) -> bytes | None:
        return b"" if ev is not None and ev.id in doomed else None

    done = _erase(store, user, decide, {"why": "prune"}, plan=plan)
    if done.record is not None:
        done.derived = _scrub(store, user, [], drop=True)
    return done


def check_text(text: Any) -> None:
    """`forget --text`'s string, on every engine."""
    if not isinstance(text, str) or len(text) < MIN_TEXT or REDACTED in text:
        rule = f"must be a string of at least {MIN_TEXT} characters (not {REDACTED})"
        raise InvalidInput([FieldError("text", rule)])


def check_prune(keep_versions: Any, older_than_ms: Any) -> None:
    """`prune`'s rules, on every engine."""
    if keep_versions is None and older_than_ms is None:
        raise InvalidInput([FieldError("keep_versions", "give --keep-versions or --older-than")])
    if keep_versions is not None and (type(keep_versions) is not int or keep_versions < 1):
        raise InvalidInput([FieldError("keep_versions", "must be an integer of at least 1")])
    if older_than_ms is not None and (type(older_than_ms) is not int or older_than_ms < 0):
        raise InvalidInput([FieldError("older_than", "must be a duration of 0 or more")])


def purge(store: Store, user: str) -> int:
    """Take out of the files the lines erase records hide (brought back by a merge, or left by
    a forget that was killed): what the next write and `verify --repair` do. Returns how many."""
    view = store.view(user)
    erased = view.state.erased
    if not erased:
        return 0

    def decide(line: bytes, ev: Any) -> bytes | None:
        if ev is None:
            return None
        return b"" if erased.hides(id_hash(ev.id), line, ev.session_id, ev.ts_ms) else None

    return _erase(store, user, decide, None).events


# --- the one mechanism ------------------------------------------------------------------------


def _erase(
    store: Store,
    user: str,
    decide: Decide,
    record: dict[str, Any] | None,
    plan: Callable[[list[Any]], None] | None = None,
    needle: bytes | None = None,
) -> Forgotten:
    """Under every writer lock of `user`: read the files, `decide` each line, append the erase
    record (first for removals, last for rewrites) and rewrite the files that changed. Only
    lines holding `needle` (when given) are decoded and decided on: the rest are kept as
    they are, which is most of a big log."""
    layout = store.layout
    folder = layout.log / user
    done = Forgotten()
    new: dict[Path, Path] = {}  # log file -> its new text, written and synced beside it
    items: list[list[Any]] = []
    replacing = False
    with _all_locks(store, user) as paths, _cleanup(new):
        if plan is not None:  # (one file in memory at a time)
            events = (_event(raw[a:b]) for raw in map(_read, paths) for a, b in _spans(raw))
            plan([ev for ev in events if ev is not None])
        for path in paths:
            raw = _read(path)
            out: list[bytes] = []
            kept_to = 0  # raw[kept_to:] is not decided on yet: copied as it is
            for start, end in _spans(raw, needle):
                line = raw[start:end]
                if not line.endswith(b"\n"):
                    continue  # a torn tail: not a line yet
                ev = _event(line)
                verdict = decide(line, ev)
                if verdict is None:
                    continue
                out.append(raw[kept_to:start])
                kept_to = end
                done.events += 1
                replacing = replacing or bool(verdict)
                if verdict:
                    out.append(verdict if verdict.endswith(b"\n") else verdict + b"\n")
                if ev is not None:
                    items.append([ev.id, ev.writer, ev.seq, erase.line_hash(line)])
            if out:
                out.append(raw[kept_to:])
                new[path] = _write_beside(path, out)
        if not new:
            return done
        if record is not None:
            record = {**record, "lines": items}
            if "session" in record:
                record["until"] = ms_to_ts(now_ms())
        if record is not None and not replacing:
            done.record = _append_record(store, user, record)
        for path, tmp in list(new.items()):
            os.replace(tmp, path)
            del new[path]
            done.files.append(str(path.relative_to(layout.root)))
        touch_folder(str(folder))
        fsync_dir(folder)
        if record is not None and replacing:
            done.record = _append_record(store, user, record)
    store._views.get(user).reset()
    done.committed = committed_ids(layout.root, [i[0] for i in items])
    if done.committed and record is not None and not replacing:
        done.filter_repo = filter_repo_hint(layout.root, done.record, [i[0] for i in items])
    return done


@contextlib.contextmanager
def _all_locks(store: Store, user: str) -> Iterator[list[Path]]:
    """Hold the writer lock of every log file of `user` (and of this clone's own)."""
    folder = store.layout.log / user
    try:
        names = sorted(
            e.name[: -len(".jsonl")]
            for e in os.scandir(folder)
            if e.name.endswith(".jsonl") and e.is_file(follow_symlinks=False)
        )
    except FileNotFoundError:
        names = []
    writers = sorted({*names, store.writer})
    leftovers = [p for p in folder.glob(".*.jsonl.forget")] if names else []
    appender = store._writer.appender
    with contextlib.ExitStack() as stack:
        for writer in writers:
            stack.enter_context(appender.locked(user, writer))
        for path in leftovers:  # a forget killed before its renames (under these locks now)
            with contextlib.suppress(OSError):
                path.unlink()
        yield [folder / f"{n}.jsonl" for n in names]


def _read(path: Path) -> bytes:
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
        return f.read()


def _spans(raw: bytes, needle: bytes | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) of each line of `raw` — only of those holding `needle`, when given, found
    without looking at the others (most of a big log)."""
    if needle is None:
        start = 0
        while start < len(raw):
            end = raw.find(b"\n", start)
            end = len(raw) if end < 0 else end + 1
            yield start, end
            start = end
        return
    at, done_to = raw.find(needle), 0
    while at >= 0:
        start = raw.rfind(b"\n", 0, at) + 1
        end = raw.find(b"\n", at)
        end = len(raw) if end < 0 else end + 1
        if start >= done_to:
            yield start, end
            done_to = end
        at = raw.find(needle, end)


def _event(line: bytes) -> Any:
    """The event on a line, or None (blank or damaged)."""
    try:
        return decode(line.rstrip(b"\r\n")) if line.strip() else None
    except DecodeError:
        return None


def _write_beside(path: Path, pieces: list[bytes]) -> Path:
    """The file's new text in a temporary file beside it (same folder: a rename replaces it),
    synced; renamed over it once the erase record is down."""
    tmp = path.with_name(f".{path.name}.forget")
    with open(tmp, "wb") as out:
        out.writelines(pieces)
        out.flush()
        os.fsync(out.fileno())
    return tmp


@contextlib.contextmanager
def _cleanup(new: dict[Path, Path]) -> Iterator[None]:
    """Remove the temporary files of a forget that failed before renaming them."""
    try:
        yield
    finally:
        for tmp in new.values():
            with contextlib.suppress(OSError):
                tmp.unlink()


def _append_record(store: Store, user: str, fields: dict[str, Any]) -> str:
    """Append an erase record to this clone's file in `erased/<user>/` (durable), and move the
    folder's mtime so every reader reads the records again."""
    record = {
        "v": 1,
        "type": "erase",
        "id": uuid7(),
        "ts": ms_to_ts(now_ms()),
        "user": user,
        "writer": store.writer,
        **fields,
    }
    folder = erase.folder(store.layout.root, user)
    _attributes(store.layout.root)
    for path in (folder.parent, folder):
        if path.is_symlink():
            raise StorageError(f"Refusing to write through the link {path}.")
        path.mkdir(exist_ok=True)
    path = folder / f"{store.writer}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, erase.encode(record))
        os.fsync(fd)
    finally:
        os.close(fd)
    touch_folder(str(folder))
    fsync_dir(folder)
    fsync_dir(folder.parent)
    return str(record["id"])


def _attributes(root: Path) -> None:
    """A memory folder made before erase records existed: git merges them by union too."""
    path = root / ".gitattributes"
    with contextlib.suppress(OSError):
        text = path.read_text() if path.is_file() and not path.is_symlink() else None
        if text is not None and ERASED_ATTRIBUTES.strip() not in text:
            path.write_text(
                text + ("" if text.endswith("\n") or not text else "\n") + ERASED_ATTRIBUTES
            )


def redact_text(value: Any, text: str) -> Any:
    if isinstance(value, str):
        return value.replace(text, REDACTED)
    if isinstance(value, list):
        return [redact_text(v, text) for v in value]
    if isinstance(value, dict):
        return {redact_text(k, text): redact_text(v, text) for k, v in value.items()}
    return value


# --- what was derived -----------------------------------------------------------------------


def _scrub(store: Store, user: str | None, needles: list[bytes], *, drop: bool) -> list[str]:
    """Remove what was derived from the forgotten lines: the search index and projection cache
    of `user` (when given); and in the hooks' files, whatever holds a needle — a file dropped or
    its lines dropped (`drop`), or the needle replaced with [REDACTED]."""
    root, local = store.layout.root, store.layout.local
    done: list[str] = []
    if user is not None:
        done += _drop_indexes(store, user)
    needles = [n for n in needles if n]
    if not needles:
        return done
    whole = [
        *_files(local / "transcripts"),
        *_files(local / "events"),
        local / "current-session.json",
    ]
    by_line = [local / "hooks.log", local / "last-briefing.md", *_files(local / "quarantine")]
    for path in whole + by_line:
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if not any(n in raw for n in needles):
            continue
        if drop and path in whole:
            path.unlink()
        else:
            if drop:
                text = b"".join(
                    line for line in raw.splitlines(keepends=True)
                    if not any(n in line for n in needles)
                )  # fmt: skip
            else:
                text = raw
                for n in needles:
                    text = text.replace(n, REDACTED.encode())
            _write_over(path, text)
        done.append(str(path.relative_to(root)))
    return done


def _drop_indexes(store: Store, user: str) -> list[str]:
    """The user's search index and projection cache (rebuilt on the next read), and the last
    briefing the hooks printed."""
    local, done = store.layout.local, []
    index = store._indexes.pop(user, None)
    if index is not None:
        index.close()
    for path in [
        local / "cache" / f"{user}.bin",
        *(local / "search" / f"{user}.sqlite{end}" for end in ("", "-wal", "-shm")),
        local / "last-briefing.md",
    ]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            done.append(str(path.relative_to(store.layout.root)))
    return done


def _files(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder) if e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def _write_over(path: Path, text: bytes) -> None:
    tmp = path.with_name(f".{path.name}.scrub")
    tmp.write_bytes(text)
    os.replace(tmp, path)
