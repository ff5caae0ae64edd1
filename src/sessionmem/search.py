"""Full-text search over every snapshot's tasks, decisions, files and commands (docs/decisions.md,
"Search"): an SQLite FTS5 index per user in `.memory/.local/search/`, derived and disposable like
the projection cache — the logs are the truth.

The index follows the projection: before each search it takes the lines the fold has read since
(an append indexes one snapshot), and reads again from scratch a file the fold no longer holds as
it was (checkout, merge, rewrite: the index keeps, per file, its inode, the last line it took at
its place, and a CRC-32 of every byte it took — checked against the file the first time this
process meets a fold of it, so an edit in place, even at the same size, is seen). Which hits are
live — the session not deleted, the version still in its history, the newest version unless
every version is asked — is decided by the projection at query time, so a stale index can never
change an answer. Several processes share it: SQLite's own locking,
and a sync that re-reads the index's state inside its write transaction.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from .errors import FieldError, InvalidInput, StorageError
from .filecheck import prefix_crc
from .model import SearchHit as Hit
from .projection import UserView

SCHEMA = 2  # 2: files.crc
COLUMNS = ("task", "decision", "file", "command")
FIELD_OF = {"task": "open_tasks", "decision": "key_decisions", "file": "files_modified",
            "command": "commands_run"}  # fmt: skip
MAX_QUERY = 1000
_BATCH = 2000
_TERM = re.compile(r'\s*(?:([A-Za-z]+):)?(?:"([^"]*)"|([^\s"]+))')


class Term(NamedTuple):
    """One required part of a query: its words (a phrase when several), the field it is
    scoped to (task, decision, file, command; None for any), and whether the last is a prefix."""

    field: str | None
    tokens: list[str]
    prefix: bool


def parse_query(text: str) -> list[Term]:
    """The user's query, read by the one syntax every engine takes: words and "phrases" (each
    matched as written, a trailing * for a prefix), scoped by `task:`, `decision:`, `file:` or
    `command:`, all required. InvalidInput naming `q` for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(FieldError("q", "must be a non-empty search query."))
    if len(text) > MAX_QUERY:
        raise InvalidInput(FieldError("q", f"must be at most {MAX_QUERY} characters."))
    if text.count('"') % 2:
        raise InvalidInput(FieldError("q", 'has an unbalanced quote ("); close the phrase.'))
    terms, pos = [], 0
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise InvalidInput(
                    FieldError("q", f"cannot be read from {text[pos : pos + 20]!r}.")
                )
            break
        pos = m.end()
        field, phrase, word = m.group(1), m.group(2), m.group(3)
        if field is not None and field.lower() not in COLUMNS:
            raise InvalidInput(
                FieldError(
                    "q", f"has an unknown field {field}:; use task:, decision:, file: or command:."
                )
            )
        raw = phrase if phrase is not None else word
        prefix = word is not None and word.endswith("*") and len(word) > 1
        raw = raw[:-1] if prefix else raw
        tokens = re.findall(r"\w+", raw)
        if tokens:  # punctuation alone matches nothing: left out
            terms.append(Term(field.lower() if field else None, tokens, prefix))
    if not terms:
        raise InvalidInput(FieldError("q", "has no word to search for."))
    return terms


def fts_query(text: str) -> str:
    """The user's query as an FTS5 expression (`parse_query`); nothing in it is read as FTS5
    syntax."""
    parts = []
    for term in parse_query(text):
        quoted = '"' + " ".join(term.tokens) + '"' + ("*" if term.prefix else "")
        parts.append(f"{term.field} : {quoted}" if term.field else quoted)
    return " AND ".join(parts)


class SearchIndex:
    """One user's index (thread-safe; one SQLite connection per thread)."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        # file -> the fold's part number whose bytes this process checked against the index's
        # CRC: a part folded again (an edit in place, a replaced file) gets a new number.
        self._checked: dict[str, int] = {}

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # derived data: a lost tail is re-indexed
            db.execute("PRAGMA secure_delete=ON")  # a deleted row's text does not linger
            _upgrade(db)
            db.executescript(
                "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
                "CREATE TABLE IF NOT EXISTS files(name TEXT PRIMARY KEY, ino INTEGER,"
                " upto INTEGER, last TEXT, crc INTEGER);"
                "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(task, decision, file, command,"
                " session UNINDEXED, id UNINDEXED, ts UNINDEXED, project UNINDEXED,"
                " branch UNINDEXED, event UNINDEXED, agent UNINDEXED, src UNINDEXED,"
                " off UNINDEXED);"
            )
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA,))
            self._local.db = db
            self._local.ino = _inode(self.path)
        return db

    # --- following the fold ------------------------------------------------------------------

    def sync(self, view: UserView) -> int:
        """Index what the view holds and the index does not; returns how many lines it took."""
        db = getattr(self._local, "db", None)
        if db is not None and _inode(self.path) != self._local.ino:
            db.close()  # the file was removed (a forget): never answer from the old one
            self._local.db = None
            self._checked.clear()
        db = self._db()
        erased = view.state.erased.digest
        row = db.execute("SELECT value FROM meta WHERE key = 'erased'").fetchone()
        if (row[0] if row else erased) != erased:  # new erase records: index it all again
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM fts")
            db.execute("DELETE FROM files")
            db.execute("COMMIT")
            db.execute("VACUUM")  # (with secure_delete: no erased byte left in free pages)
            self._checked.clear()
        if row is None or row[0] != erased:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('erased', ?)", (erased,))
        plan = self._plan(view, dict(self._files(db)))
        if not plan:
            return 0
        db.execute("BEGIN IMMEDIATE")
        try:
            plan = self._plan(view, dict(self._files(db)))  # another process may have done it
            taken = sum(self._take(db, view, *item) for item in plan)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return taken

    @staticmethod
    def _files(db: sqlite3.Connection) -> list[tuple[str, tuple[int, int, str, int]]]:
        return [(n, (i, u, last, c)) for n, i, u, last, c in db.execute("SELECT * FROM files")]

    def _plan(
        self, view: UserView, files: dict[str, tuple[int, int, str, int]]
    ) -> list[tuple[str, int, int, int, list[int], list[int]]]:
        """(file, inode, from offset — -1: drop what the index holds of it first —, up to, row
        refs, row offsets) of every file with something to take; a file gone is dropped."""
        plan = []
        with view.state.lock:
            parts = {n: (p.no, p.ino, p.consumed) for n, p in view.state.parts.items()}
        for name, (no, ino, end) in parts.items():
            kept = files.get(name)
            trusted = self._checked.get(name) == no or (
                kept is not None
                and kept[0] == ino
                and kept[1] <= end
                and self._check(view, name, kept, no)
            )
            if kept is not None and kept[0] == ino and kept[1] == end and trusted:
                continue  # as the index left it: nothing to take (the usual search)
            start = -1  # drop what the index holds of it, then read it all
            if kept is None:
                if not end:
                    continue
                start = 0  # new to the index: nothing to drop
            elif kept[0] == ino and kept[1] <= end and trusted and _holds(view, name, kept):
                start = kept[1]
            with view.state.lock:
                part = view.state.parts.get(name)
                if part is None or part.no != no:
                    continue  # changed meanwhile: the next search takes it
                first = bisect.bisect_left(part.off, max(start, 0))
                offs = list(part.off[first:])
            refs = [no << 32 | r for r in range(first, first + len(offs))]
            plan.append((name, ino, start, end, refs, offs))
        for name in files.keys() - parts.keys():
            plan.append((name, -1, -1, 0, [], []))
        return plan

    def _take(
        self, db: sqlite3.Connection, view: UserView, name: str, ino: int, start: int, end: int,
        refs: list[int], offs: list[int],
    ) -> int:  # fmt: skip
        if start < 0:
            db.execute("DELETE FROM fts WHERE src = ?", (name,))
            db.execute("DELETE FROM files WHERE name = ?", (name,))
        if ino < 0:
            return 0
        for i in range(0, len(refs), _BATCH):
            records = view.read_records(refs[i : i + _BATCH])
            rows = [
                _row(rec, name, off)
                for rec, off in zip(records, offs[i : i + _BATCH], strict=True)
                if rec.get("type") == "snapshot" and isinstance(rec.get("data"), dict)
            ]
            db.executemany("INSERT INTO fts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        old = db.execute("SELECT crc FROM files WHERE name = ?", (name,)).fetchone()
        crc = _crc(view.state.folder / name, max(start, 0), end, old[0] if old and start > 0 else 0)
        db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)",
                   (name, ino, end, _tail(view.state.folder / name, end), crc))  # fmt: skip
        with view.state.lock:
            part = view.state.parts.get(name)
            if part is not None and part.ino == ino:
                self._checked[name] = part.no
        return len(refs)

    def _check(self, view: UserView, name: str, kept: tuple[int, int, str, int], no: int) -> bool:
        """Whether the file still holds every byte the index took from it (its CRC), checked
        once per fold of the file in this process."""
        ok = _crc(view.state.folder / name, 0, kept[1]) == kept[3]
        if ok:
            self._checked[name] = no
        return ok

    # --- asking ----------------------------------------------------------------------------------

    def matches(self, expression: str, where: dict[str, str | None], offset: int) -> sqlite3.Cursor:
        """(rowid, session, id, ts, file, offset) of every match from position `offset`, best
        first (rank, then newest): one query, read as far as the caller needs — never re-run
        page by page (that made a search's cost grow with the square of its matches)."""
        sql = "SELECT rowid, session, id, ts, src, off FROM fts WHERE fts MATCH ?"
        args: list[Any] = [expression]
        for column, op in (("project", "="), ("branch", "="), ("event", "="), ("agent", "="),
                           ("session", "="), ("since", ">="), ("until", "<=")):  # fmt: skip
            value = where.get(column)
            if value is not None:
                sql += f" AND {'ts' if column in ('since', 'until') else column} {op} ?"
                args.append(value)
        sql += " ORDER BY bm25(fts, 4.0, 4.0, 2.0, 1.0), ts DESC LIMIT -1 OFFSET ?"
        return self._db().execute(sql, [*args, offset])

    def snippets(self, rowid: int, expression: str) -> tuple[str, str]:
        """(field, snippet) of the best-matching column of one hit."""
        cols = ", ".join(f"snippet(fts, {i}, '[', ']', '…', 16)" for i in range(len(COLUMNS)))
        row = (
            self._db()
            .execute(f"SELECT {cols} FROM fts WHERE fts MATCH ? AND rowid = ?", (expression, rowid))
            .fetchone()
        )
        for column, text in zip(COLUMNS, row or (), strict=False):
            if text and "[" in text:
                return FIELD_OF[column], text
        return FIELD_OF[COLUMNS[0]], (row or [""])[0] or ""

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,3})?)?Z?)?\Z")


def check_time(name: str, value: str | None) -> None:
    """A search bound: the documented shape, and a time that exists (no 2026-13-45, no year
    0)."""
    if value is None:
        return

    ok = isinstance(value, str) and TIME.match(value) is not None
    if ok:
        text = value.rstrip("Z")
        try:
            ok = datetime.fromisoformat(text + ("T00:00" if len(text) == 10 else "")).year >= 1970
        except ValueError:
            ok = False
    if not ok:
        raise InvalidInput(
            FieldError(
                name,
                "must be a real UTC time from 1970 like 2026-12-01 or 2026-12-01T10:00:00Z "
                "(month 1-12, a day the month has).",
            )
        )


def until_end(value: str) -> str:
    """The last stored time `until` covers: a day or minute given means all of it."""
    return value.rstrip("Z") + "\uffff"


class _Versions:
    """Which indexed events are live, for one search: each session's history is looked at once
    (its refs mapped to versions on first need), so a search costs O(matches), never a scan of a
    session's history per match."""

    def __init__(self, view: UserView, every: bool):
        self.view, self.every = view, every
        self._maps: dict[str, tuple[Any, dict[int, int], dict[int, int] | None]] = {}

    def of(self, session_id: str, src: str, off: int) -> int:
        """The live version of the event indexed from `src` at `off` (0: not live, or not the
        newest when every version is not asked for)."""
        view = self.view
        with view.state.lock:
            part = view.state.parts.get(src)
            if part is None:
                return 0
            row = bisect.bisect_left(part.off, off)
            if row >= len(part.off) or part.off[row] != off:
                return 0
            ref = part.no << 32 | row
        hist = view.history(session_id)
        if hist is None or hist.deleted:
            return 0
        newest = len(hist.refs) - hist.start
        if not self.every:  # only the newest counts: one comparison (or its union-merge twin)
            last = hist.refs[-1]
            return newest if last == ref or view.state.idh(last) == view.state.idh(ref) else 0
        kept = self._maps.get(session_id)
        if kept is None or kept[0] is not hist:
            refs = {r: i - hist.start + 1 for i, r in enumerate(hist.refs) if i >= hist.start}
            kept = self._maps[session_id] = (hist, refs, None)
        version = kept[1].get(ref)
        if version is None:  # another copy of the same event (a union merge's duplicate)?
            ids = kept[2]
            if ids is None:
                ids = {view.state.idh(r): v for r, v in kept[1].items()}
                self._maps[session_id] = (hist, kept[1], ids)
            version = ids.get(view.state.idh(ref), 0)
        return version


SEARCH_BUDGET = 5.0  # seconds one search may take (SESSIONMEM_SEARCH_BUDGET)
_CHECK_EVERY = 20_000  # SQLite steps between two looks at the clock


def find(
    view: UserView,
    index: SearchIndex,
    expression: str,
    where: dict[str, str | None],
    every: bool,
    limit: int,
    start: int,
    *,
    budget: float | None = None,
    cancel: threading.Event | None = None,
) -> tuple[list[Hit], int | None]:
    """A page of live hits from position `start` among the matches, and the position after its
    last one when there are more (the cursor). Its cost is bounded: one query whose rows are
    read until the page is full, within `budget` seconds (past it, a 422 naming `q`), and it
    stops when `cancel` is set (the client went away)."""
    budget = budget if budget is not None else search_budget()
    deadline = time.monotonic() + budget

    def stop() -> int:
        return int(time.monotonic() > deadline or (cancel is not None and cancel.is_set()))

    db = None
    try:
        index.sync(view)
        db = index._db()
        db.set_progress_handler(stop, _CHECK_EVERY)
        found: list[tuple[int, str, int, str, str, int]] = []
        seen: set[str] = set()
        pos = start
        live = _Versions(view, every)
        rows = index.matches(expression, where, start)
        while len(found) <= limit:
            if stop():  # (SQLite's own steps are checked by the progress handler)
                raise sqlite3.OperationalError("interrupted")
            batch = rows.fetchmany(256)
            if not batch:
                break
            for rowid, sid, event_id, ts, src, off in batch:
                pos += 1
                version = live.of(sid, src, off)
                if version and event_id not in seen:
                    seen.add(event_id)
                    found.append((rowid, sid, version, event_id, ts, pos))
                    if len(found) > limit:
                        break
        rows.close()
        items = [
            Hit(sid, version, event_id, *index.snippets(rowid, expression), ts)
            for rowid, sid, version, event_id, ts, _ in found[:limit]
        ]
        return items, (found[limit - 1][5] if len(found) > limit else None)
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc) and (cancel is None or not cancel.is_set()):
            raise InvalidInput(
                FieldError(
                    "q",
                    f"took longer than the {budget:g} s a search may take; narrow it (a rarer "
                    "word, a field such as task:, a project or a since filter).",
                )
            ) from None
        if "interrupted" in str(exc):
            raise StorageError("The search was cancelled: its client went away.") from None
        if "fts5" in str(exc) or "syntax" in str(exc):
            raise InvalidInput(FieldError("q", f"cannot be searched ({exc}).")) from None
        raise _unusable(index, exc) from exc
    except (sqlite3.Error, OSError) as exc:  # a read-only folder, a full disk, a damaged index
        raise _unusable(index, exc) from exc
    finally:
        if db is not None:
            db.set_progress_handler(None, 0)


def _unusable(index: SearchIndex, exc: BaseException) -> StorageError:
    return StorageError(
        f"Could not use the search index {index.path}: {exc}. It is derived: delete it and "
        "the next search builds it again."
    )


def search_budget() -> float:
    """Seconds one search may take: SESSIONMEM_SEARCH_BUDGET, else SEARCH_BUDGET."""
    try:
        value = float(os.environ.get("SESSIONMEM_SEARCH_BUDGET", SEARCH_BUDGET))
    except ValueError:
        return SEARCH_BUDGET
    return value if value > 0 else SEARCH_BUDGET


def _upgrade(db: sqlite3.Connection) -> None:
    """An index of another schema is dropped (it is derived: it is built again)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        return
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None or row[0] != SCHEMA:
        db.executescript("DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS fts; DROP TABLE meta;")


def _crc(path: Path, start: int, end: int, crc: int = 0) -> int:
    """CRC-32 of the file's bytes [0, end), given the CRC of [0, start); -1 if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return -1
    try:
        return prefix_crc(fd, end, crc, start)
    finally:
        os.close(fd)


def _tail(path: Path, upto: int) -> str:
    """A fingerprint of the bytes the index took from a file: the last 4 KiB before `upto`."""
    size = min(upto, 4096)
    try:
        with open(path, "rb") as f:
            f.seek(upto - size)
            raw = f.read(size)
    except OSError:
        return ""
    return f"{size}:{hashlib.sha1(raw).hexdigest()}"


def _holds(view: UserView, name: str, kept: tuple[int, int, str, int]) -> bool:
    """Whether the file still holds, at their place, the bytes indexed from it."""
    return not kept[1] or _tail(view.state.folder / name, kept[1]) == kept[2]


def _row(rec: dict[str, Any], name: str, off: int) -> tuple[Any, ...]:
    data = rec["data"]
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}

    def text(field: str) -> str:
        items = data.get(field)
        return "\n".join(x for x in items if isinstance(x, str)) if isinstance(items, list) else ""

    agent = meta.get("agent")
    return (
        text("open_tasks"),
        text("key_decisions"),
        text("files_modified"),
        text("commands_run"),
        rec.get("session_id"),
        rec.get("id"),
        rec.get("ts"),
        data.get("project_path") if isinstance(data.get("project_path"), str) else None,
        data.get("git_branch") if isinstance(data.get("git_branch"), str) else None,
        data.get("event") if isinstance(data.get("event"), str) else None,
        agent if isinstance(agent, str) else None,
        name,
        off,
    )
