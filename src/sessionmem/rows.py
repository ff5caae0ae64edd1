"""The fold's data: the rows folded from each log file (a column of fixed-width numbers per
field, `COLUMNS`), a session's merged history, the session heads' summaries, and what a fold
changed. Derived from the log files alone, and thrown away freely (docs/storage.md, "Reading").

A stored event costs one row of numbers, not a Python object: the history is positions in the
log, read back on demand. A row is addressed by a *ref*: `part_no << 32 | row`.
"""

from __future__ import annotations

import threading
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .codec import LIST_FIELDS
from .erase import Erased
from .model import Problem

if TYPE_CHECKING:
    from .codec import Event

SNAPSHOT, DELETE = 0, 1
_MAX_PROBLEMS = 100  # per part; the count goes on
# The columns of a part, in the order the projection cache and the fold child write them:
# (attribute, array typecode). `Part` has exactly these (a test holds them together).
COLUMNS = (("ts", "q"), ("seq", "q"), ("widx", "i"), ("off", "q"), ("ln", "i"), ("kind", "b"),
           ("idh", "q"))  # fmt: skip


class Part:
    """The rows folded from one log file."""

    def __init__(self, no: int, path: Path):
        self.no = no
        self.path = path
        self.dev = self.ino = -1
        self.seen_size = -1
        self.seen_mtime = -1
        self.seen_ctime = -1
        self.consumed = 0
        # The last line folded (offset, bytes with its newline): proof that a grown file was
        # appended to, not rewritten.
        self.last_off = 0
        self.last = b""
        self.max_ts: dict[str, int] = {}  # writer -> newest ts among this file's rows
        # CRC-32 of the file's bytes [0, crc_at), kept up by the projection cache; a part loaded
        # from the cache is `unverified` until the first time its file changed is checked.
        self.crc = 0
        self.crc_at = 0
        self.unverified = False
        self.ts = array("q")
        self.seq = array("q")
        self.widx = array("i")
        self.off = array("q")
        self.ln = array("i")
        self.kind = array("b")
        self.idh = array("q")
        self.by_session: dict[int, array[int]] = {}
        self.problems: list[Problem] = []
        self.problem_count = 0
        self.hidden = 0  # erased lines still in the file: read past (`erase`), removed by a write

    def report(self, offset: int, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(Problem(str(self.path), offset, reason))


class History:
    """A session's merged, de-duplicated rows; `refs[start:]` is the live history."""

    __slots__ = ("refs", "last_key", "start")

    def __init__(self, refs: array[int], last_key: tuple[Any, ...], start: int):
        self.refs = refs
        self.last_key = last_key
        self.start = start

    @property
    def deleted(self) -> bool:
        return self.start == len(self.refs) and len(self.refs) > 0

    def push(self, key: tuple[Any, ...], ref: int, kind: int) -> bool:
        """Add the session's newest event; False if it is not the newest (sort again)."""
        if key <= self.last_key:
            return False
        self.refs.append(ref)
        self.last_key = key
        if kind == DELETE:
            self.start = len(self.refs)
        return True


# A session's head: (key, ref, kind) of its newest event. A plain tuple: one is made per folded
# event while reading a log cold.
Head = tuple[tuple[Any, ...], int, int]


class Summary(NamedTuple):
    """What filtering and listing need of a session's newest snapshot — a few short fields, not
    its data (a snapshot may hold a megabyte of values; a listing must not hold them all)."""

    ref: int
    session_id: str
    snapshot_id: str
    ts: str
    fields: dict[str, Any]  # event, project_path, git_branch: what `Filters` looks at
    counts: dict[str, int]

    @property
    def size(self) -> int:
        """About what it costs to keep (bytes)."""
        return 600 + sum(len(v) for v in self.fields.values() if isinstance(v, str))


def summarize(ref: int, ev: Event) -> Summary:
    data = ev.data
    fields = {name: data.get(name) for name in ("event", "project_path", "git_branch")}
    meta = data.get("metadata")
    agent = meta.get("agent") if isinstance(meta, dict) else None
    fields["agent"] = agent if isinstance(agent, str) else None
    counts = {name: len(data.get(name) or []) for name in LIST_FIELDS}
    return Summary(ref, ev.session_id, ev.id, ev.ts, fields, counts)


class Rows:
    """The state of one user's projection: every part's rows, the session and writer names they
    number, each session's head and (once asked) merged history, the idempotency keys seen.
    `projection.UserView` owns one and reads it; the functions of `fold` write it; the projection
    cache saves and loads it. Every access takes `lock`."""

    def __init__(self, folder: Path, user: str):
        self.folder = folder
        self.user = user
        self.lock = threading.RLock()
        self.parts: dict[str, Part] = {}  # by file name
        self.by_no: dict[int, Part] = {}  # by part number (the high half of a ref)
        self.next_no = 1
        self.session_names: list[str] = []
        self.session_index: dict[str, int] = {}
        self.writer_names: list[str] = []
        self.writer_index: dict[str, int] = {}
        self.heads: dict[int, Head] = {}
        self.histories: dict[int, History] = {}
        self.idem: dict[str, int] = {}  # Idempotency-Key -> ref of the first event holding it
        self.generation = 0  # bumped whenever anything changed; caches key on it
        self.stamp: tuple[int, int] | None = None  # (inode, mtime_ns) of the folder when read
        self.full_at = 0.0  # when every file was last looked at
        self.seconds: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> ms, while folding
        self.loaded_rows = 0  # rows that came from the projection cache
        self.saved_rows = 0  # rows when the cache was last written or read
        self.saved_generation = 0  # `generation` then
        self.rebuilt = False  # a file was dropped since: the cache describes files gone
        # (key, sidx, ref) of the newest live snapshot; None means "work it out again".
        self.latest: tuple[tuple[Any, ...], int, int] | None = None
        # What erase records hide (`erase.Erased`), and the erase folder's (inode, mtime) then.
        self.erased = Erased().seal()
        self.erased_stamp: tuple[int, int] | None = None

    def hidden(self) -> int:
        """Erased lines still present in the files folded (each read past)."""
        return sum(p.hidden for p in self.parts.values())

    def key(self, ref: int) -> tuple[int, str, int, int]:
        """The order of the event at `ref`: (ts, writer, seq, id hash)."""
        part = self.by_no[ref >> 32]
        row = ref & 0xFFFF_FFFF
        return (part.ts[row], self.writer_names[part.widx[row]], part.seq[row], part.idh[row])

    def kind(self, ref: int) -> int:
        return self.by_no[ref >> 32].kind[ref & 0xFFFF_FFFF]

    def idh(self, ref: int) -> int:
        return self.by_no[ref >> 32].idh[ref & 0xFFFF_FFFF]


class FoldResult:
    """What a fold changed: the sessions it touched, and whether a file was read anew."""

    __slots__ = ("touched", "rebuilt")

    def __init__(self) -> None:
        self.touched: set[int] = set()
        self.rebuilt = False


def intern(index: dict[str, int], names: list[str], name: str) -> int:
    """The number of a session or writer name in this view, given one on first sight."""
    number = index.get(name)
    if number is None:
        number = index[name] = len(names)
        names.append(name)
    return number
