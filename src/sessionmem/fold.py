"""Folding: how a user's log files become rows — incrementally from where the last fold stopped,
and from scratch when a file was replaced or rewritten (docs/storage.md, "Reading").

The functions here write a projection's state (`rows.Rows`), which `projection.UserView` owns
and reads. A file is taken as appended to only when it grew and still holds, byte for byte and at
the same place, the last line folded from it (that line's id makes it unique); a file replaced,
shrunk, changed without growing, or whose last folded line is gone is dropped and read again.

Order is `(ts, writer, seq)` (then the id, so two clones holding the same events agree even on
damaged input); duplicate ids (union merges, cherry-picks) count once: identical events have
identical keys, so after sorting a duplicate sits next to its twin.

(Past our ~500-line habit on purpose: the cold-start loop in `fold_lines` is written out inline
for speed — docs/decisions.md, "Speed" — beside the general `_add` it mirrors, so a change to one
is seen next to the other; a property test holds the two together.)
"""

from __future__ import annotations

import os
import stat
import sys
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import erase
from .childfold import fold_in_halves, write_rows
from .codec import (
    BOM,
    MAX_LINE_BYTES,
    MAX_SEQ,
    MS_DIGITS,
    SCHEMA_VERSION,
    UUID_RE,
    DecodeError,
    Event,
    data_problem,
    decode,
    id_hash,
    ts_to_ms,
)
from .filecheck import (
    PASSING,
    appended,
    holds_last,
    prefix_crc,
    real_dir,
    remember_last,
    unreadable,
)
from .rows import COLUMNS, DELETE, SNAPSHOT, FoldResult, Head, Part, Rows, intern

if TYPE_CHECKING:
    from .log import Appended

# Appends and git both change the folder's mtime; a tool that edits a log in place does not, so
# every file is looked at anyway this often (the server's watcher notices such edits at once).
FULL_CHECK_SECONDS = 1.0
SETTLE_NS = 20_000_000
# A cold fold of more than this many bytes is shared with a child process (two cores, two
# halves); smaller ones are not worth its start-up (~0.15 s).
PARALLEL_FOLD_BYTES = 64 << 20


def refresh(state: Rows, *, force: bool = False) -> bool:
    """Fold whatever changed on disk since the last call. Returns True if anything did.

    One stat of the folder answers "nothing changed": every append moves the folder's mtime
    forward (`log.touch_folder`), and git's replacements change it too. `force` looks at
    every file anyway (the watcher uses it, for edits made in place by other tools).
    """
    try:
        st = os.lstat(state.folder)  # a linked user folder is not read (docs/storage.md)
        stamp: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        if not stat.S_ISDIR(st.st_mode):
            stamp = None
    except OSError:
        stamp = None
    now = time.monotonic()
    if (
        not force
        and stamp is not None
        and stamp == state.stamp
        and now - state.full_at < FULL_CHECK_SECONDS
    ):
        return False
    with state.lock:
        # New erase records come with rewritten logs (a forget here, a merge of one there),
        # which move the folder's mtime; one merged alone is seen by the next full check.
        erased_at = erase.stamp(erase.folder_of(state.folder))
        touched: set[int] = set()
        changed = erased_at != state.erased_stamp and _new_erasures(state, erased_at, touched)
        # A folder changed in the last few ms may change again within the same tick of the
        # kernel's coarse clock (git writing files) and keep its mtime: do not trust it yet.
        settled = stamp is not None and time.time_ns() - stamp[1] > SETTLE_NS
        state.stamp = stamp if settled else None
        state.full_at = now
        entries = {}
        if stamp is not None and real_dir(state.folder.parent):
            try:
                entries = {
                    e.name: e.stat(follow_symlinks=False)
                    for e in os.scandir(state.folder)
                    if e.name.endswith(".jsonl") and e.is_file(follow_symlinks=False)
                }
            except (FileNotFoundError, NotADirectoryError):
                entries = {}
            except OSError as exc:  # out of descriptors, an I/O error: not "no files"
                state.stamp = None
                raise unreadable(state.folder, exc) from exc
        for name in [n for n in state.parts if n not in entries]:
            touched |= _drop(state, state.parts[name])
            changed = True
        for name, st in entries.items():
            part = state.parts.get(name)
            if part is None:
                part = new_part(state, name)
            elif (
                st.st_size == part.seen_size
                and st.st_mtime_ns == part.seen_mtime
                and st.st_ctime_ns == part.seen_ctime
                and st.st_ino == part.ino
                and st.st_dev == part.dev
            ):
                continue
            elif not appended(part, st):
                touched |= _drop(state, part)
                part = new_part(state, name)
            result = _fold(state, part)
            touched |= result.touched
            changed = True
        if changed:
            _changed(state, touched)
        return changed


def _new_erasures(state: Rows, erased_at: tuple[int, int] | None, touched: set[int]) -> bool:
    """Read the erase records again (their folder changed); when they say something new, every
    file is folded again under them. Returns whether anything changed."""
    settled = erased_at is not None and time.time_ns() - erased_at[1] > SETTLE_NS
    state.erased_stamp = erased_at if settled else None
    erased = erase.load(erase.folder_of(state.folder))
    if erased.digest == state.erased.digest:
        return False
    state.erased = erased
    for part in list(state.parts.values()):
        touched |= _drop(state, part)
    return True


def reset(state: Rows) -> None:
    """Forget every file's fold: the next `refresh` reads them all again."""
    with state.lock:
        touched: set[int] = set()
        for part in list(state.parts.values()):
            touched |= _drop(state, part)
        state.stamp = None
        _changed(state, touched)


def invalidate(state: Rows, part_no: int | None) -> None:
    """A read found this part's file changed: fold it again on the next refresh."""
    with state.lock:
        part = state.by_no.get(part_no) if part_no is not None else None
        if part is None:
            state.stamp = None
            return
        touched = _drop(state, part)
        new_part(state, part.path.name)
        state.stamp = None
        _changed(state, touched)


def _changed(state: Rows, touched: set[int]) -> None:
    state.generation += 1  # (cached summaries are keyed by ref: a new head is a new key)


def note_append(state: Rows, a: Appended, ev: Event) -> int | None:
    """Fold a line this process just appended without reading it back, when nothing else
    was appended to its file since the last fold. Returns its ref, or None (then refresh)."""
    offset, line = a.offset, a.line
    size_after, mtime_ns = a.size_after, a.mtime_ns
    folder_before, folder_after = a.folder_mtime_before, a.folder_mtime_ns
    with state.lock:
        part = state.parts.get(os.path.basename(a.path))
        if part is None or part.ino != a.ino or part.consumed != offset:
            return None
        result = FoldResult()
        row = _add_row(state, part, ev, offset, len(line) - 1, result)
        part.consumed = offset + len(line)
        exact = size_after == part.consumed
        part.seen_size = size_after if exact else -1
        part.seen_mtime = mtime_ns if exact else -1
        part.seen_ctime = a.ctime_ns if exact else -1
        part.last_off, part.last = offset, line
        if state.stamp is not None and exact and state.stamp[1] == folder_before:
            # The folder changed only by our own touch: nothing else to fold because of it.
            state.stamp = (state.stamp[0], folder_after)
        _changed(state, result.touched)
        return part.no << 32 | row


def new_part(state: Rows, name: str) -> Part:
    part = Part(state.next_no, state.folder / name)
    state.next_no += 1
    state.parts[name] = part
    state.by_no[part.no] = part
    return part


def _drop(state: Rows, part: Part) -> set[int]:
    state.latest = None
    state.rebuilt = True
    del state.parts[part.path.name]
    del state.by_no[part.no]
    touched = set(part.by_session)
    for sidx in touched:
        state.histories.pop(sidx, None)
        _recompute_head(state, sidx)
    state.idem = {k: r for k, r in state.idem.items() if r >> 32 != part.no}
    return touched


def _fold(state: Rows, part: Part) -> FoldResult:
    result = FoldResult()
    try:
        fd = os.open(part.path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in PASSING:
            state.stamp = None
            raise unreadable(part.path, exc) from exc
        return result  # gone, a link, not readable by us: skipped (`verify` reports it)
    try:
        st = os.fstat(fd)
        if part.ino == -1:
            part.dev, part.ino = st.st_dev, st.st_ino
        elif (
            not appended(part, st)
            or not holds_last(fd, part)
            or (part.unverified and prefix_crc(fd, part.consumed) != part.crc)
        ):
            # Replaced or rewritten between stat and open: read it all again.
            result.touched |= _drop(state, part)
            part = new_part(state, part.path.name)
            part.dev, part.ino = st.st_dev, st.st_ino
            result.rebuilt = True
        if st.st_size - part.consumed >= PARALLEL_FOLD_BYTES:
            fold_in_halves(state, part, fd, st.st_size, result, fold_lines, fold_range)
        fold_lines(state, part, fd, result)
        part.seen_size, part.seen_mtime = st.st_size, st.st_mtime_ns
        part.seen_ctime = st.st_ctime_ns
        part.unverified = False
        remember_last(fd, part)
    finally:
        os.close(fd)
    return result


def fold_lines(state: Rows, part: Part, fd: int, result: FoldResult, end: int = -1) -> None:
    """Fold every complete line from `part.consumed`. This is the cold-start loop, so the
    common case is checked and added inline, with everything it touches bound to locals;
    an unusual line takes the full decoder (which names what is wrong) and `_add_row`."""
    user = state.user
    sessions, writers = state.session_index, state.writer_index
    seconds = state.seconds
    heads, histories, idem_map, max_ts = state.heads, state.histories, state.idem, part.max_ts
    ts_add, seq_add, widx_add = part.ts.append, part.seq.append, part.widx.append
    off_add, ln_add, kind_add, idh_add = (
        part.off.append,
        part.ln.append,
        part.kind.append,
        part.idh.append,
    )
    by_session = part.by_session
    touched = result.touched
    base = part.no << 32
    json_loads, uuid_ok, data_bad = orjson.loads, UUID_RE.match, data_problem
    row = len(part.ts) - 1
    latest = state.latest
    erased = state.erased
    screen, hides = bool(erased), erased.hides
    # A cold fold (no history or newest snapshot worked out yet) leaves each session's head
    # and each writer's newest ts to the end: in a writer's own file, lines come in (ts,
    # seq) order, so a session's last row is its newest — checked as it goes (`in_order`),
    # and worked out row by row at the end when it is not.
    deferred = not histories and latest is None
    last_rows: dict[int, int] = {}
    first_row = row + 1
    in_order, prev_ts, prev_seq, only_writer = True, -1, -1, None
    # A buffered reader's line iteration is the fastest way through a file in Python, and
    # holds one line at a time (a cold start's memory is the projection, not the file).
    reader = os.fdopen(os.dup(fd), "rb", buffering=1 << 20)
    pos = part.consumed
    limit = end if end >= 0 else 1 << 62
    try:
        reader.seek(pos)
        for line in reader:
            if line[-1:] != b"\n":
                break  # not a line yet: a writer is mid-write, or died
            start = pos
            pos += len(line)
            if pos > limit:
                pos = start
                break
            if line.isspace():
                continue
            if len(line) > MAX_LINE_BYTES:
                part.report(start, f"line of {len(line)} bytes is longer than any event")
                continue
            # Fast path: a canonical line of a session and writer already seen. Anything
            # else (a first sight, or anything odd) takes the full decoder below.
            try:
                r = json_loads(line)
                sid, writer, seq, ts, eid = (
                    r["session_id"],
                    r["writer"],
                    r["seq"],
                    r["ts"],
                    r["id"],
                )
                typ = r["type"]
                sidx = sessions.get(sid)
                widx = writers.get(writer)
                ms = seconds.get(ts[:19]) if type(ts) is str else None
                # Exactly `codec.decode`'s rules (a test holds the two together): a line
                # this accepts, the decoder accepts and reads the same way.
                data = r["data"]
                ok = (
                    sidx is not None
                    and widx is not None
                    and ms is not None
                    and r["user"] == user
                    and r["v"] == SCHEMA_VERSION
                    and type(seq) is int
                    and 0 < seq <= MAX_SEQ
                    and (typ == "snapshot" or typ == "delete")
                    and type(data) is dict
                    and type(eid) is str
                    and uuid_ok(eid) is not None
                    and len(ts) == 24
                    and ts[19] == "."
                    and ts[23] == "Z"
                    and ts[20:23] in MS_DIGITS
                    and type(r.get("idem", "")) is str
                    and type(r.get("body", "")) is str
                    and (typ == "delete" or data_bad(data) is None)
                )
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                # Any other line: the full decoder names what is wrong. Nothing in a line
                # may stop the rest of the file from being read.
                at, body = (start + 3, line[3:]) if line.startswith(BOM) else (start, line)
                try:
                    ev = decode(body)
                    if ev.user != user:
                        part.report(start, f"event of user {ev.user!r} in {user!r}'s folder")
                        continue
                    second = ev.ts[:19]
                    if second not in seconds:
                        if len(seconds) > 100_000:
                            seconds.clear()
                        seconds[second] = ts_to_ms(ev.ts[:20] + "000Z")
                    if screen and hides(id_hash(ev.id), body, ev.session_id, ev.ts_ms):
                        part.hidden += 1
                        continue
                    state.latest = latest  # the slow path keeps these itself
                    _add_row(state, part, ev, at, len(body) - 1, result)
                except DecodeError as exc:
                    part.report(start, str(exc))
                    continue
                except Exception as exc:  # noqa: BLE001 - a reader is total (docs/storage.md, "Reading")
                    part.report(start, f"unreadable event ({type(exc).__name__}: {exc})")
                    continue
                latest, row = state.latest, len(part.ts) - 1
                in_order = False  # (its head is set already; the end looks at every row)
                continue
            # -- the inline `_add`: keep the two in step --
            assert sidx is not None and widx is not None
            tms = ms + int(ts[20:23])  # type: ignore[operator]
            kind = DELETE if typ == "delete" else SNAPSHOT
            idh = int(eid[-17:].replace("-", ""), 16) & 0x7FFF_FFFF_FFFF_FFFF  # id_hash
            if screen and hides(idh, line, sid, tms):
                part.hidden += 1  # erased (`erase`): read past, never a row
                continue
            row += 1
            ts_add(tms)
            seq_add(seq)
            widx_add(widx)
            off_add(start)
            ln_add(len(line) - 1)
            kind_add(kind)
            idh_add(idh)
            rows = by_session.get(sidx)
            if rows is None:
                rows = by_session[sidx] = array("i")
            rows.append(row)
            idem = r.get("idem")
            if type(idem) is str:
                idem_map.setdefault(idem, base | row)
            if deferred:
                last_rows[sidx] = row
                if tms < prev_ts or seq <= prev_seq or writer != only_writer:
                    if only_writer is None:
                        only_writer = writer
                    else:
                        in_order = False
                prev_ts, prev_seq = tms, seq
                continue
            if tms > max_ts.get(writer, -1):
                max_ts[writer] = tms
            ref = base | row
            key = (tms, writer, seq, idh)
            touched.add(sidx)
            head = heads.get(sidx)
            if head is None or key > head[0]:
                heads[sidx] = (key, ref, kind)
            if histories:
                hist = histories.get(sidx)
                if hist is not None and not hist.push(key, ref, kind):
                    del histories[sidx]
            if latest is not None:
                if kind == SNAPSHOT and key > latest[0]:
                    latest = (key, sidx, ref)
                elif kind == DELETE and sidx == latest[1]:
                    latest = None
    finally:
        reader.close()
        part.consumed = pos
        state.latest = latest
        if last_rows:
            _settle_heads(state, part, last_rows, first_row, in_order, result)


def _settle_heads(
    state: Rows,
    part: Part,
    last_rows: dict[int, int],
    first_row: int,
    in_order: bool,
    result: FoldResult,
) -> None:
    """The end of a cold fold (`fold_lines`): heads of the sessions it added rows to, and
    the newest ts of each writer, from rows `first_row` on."""
    ts, seq, widx, idh = part.ts, part.seq, part.widx, part.idh
    names, heads, max_ts, base = state.writer_names, state.heads, part.max_ts, part.no << 32
    for sidx, last in last_rows.items():
        if in_order:
            best = last
        else:  # the newest of the session's rows from this fold
            best, best_key = -1, None
            for r in reversed(part.by_session[sidx]):
                if r < first_row:
                    break
                k = (ts[r], names[widx[r]], seq[r], idh[r])
                if best_key is None or k > best_key:
                    best, best_key = r, k
        key = (ts[best], names[widx[best]], seq[best], idh[best])
        head = heads.get(sidx)
        if head is None or key > head[0]:
            heads[sidx] = (key, base | best, part.kind[best])
        result.touched.add(sidx)
    newest: dict[int, int] = {}
    if in_order:
        newest[widx[len(ts) - 1]] = ts[len(ts) - 1]
    else:
        for r in range(first_row, len(ts)):
            if ts[r] > newest.get(widx[r], -1):
                newest[widx[r]] = ts[r]
    for w, t in newest.items():
        if t > max_ts.get(names[w], -1):
            max_ts[names[w]] = t
    state.latest = None  # worked out again on demand


def _add_row(
    state: Rows, part: Part, ev: Event, offset: int, length: int, result: FoldResult
) -> int:
    return _add(
        state,
        part,
        ev.session_id,
        ev.writer,
        ev.seq,
        ts_to_ms(ev.ts),
        DELETE if ev.type == "delete" else SNAPSHOT,
        id_hash(ev.id),
        ev.idem,
        offset,
        length,
        result,
    )


def _add(
    state: Rows,
    part: Part,
    session_id: str,
    writer: str,
    seq: int,
    ts: int,
    kind: int,
    idh: int,
    idem: str | None,
    offset: int,
    length: int,
    result: FoldResult,
) -> int:
    sidx = intern(state.session_index, state.session_names, session_id)
    widx = intern(state.writer_index, state.writer_names, writer)
    row = len(part.ts)
    part.ts.append(ts)
    part.seq.append(seq)
    part.widx.append(widx)
    part.off.append(offset)
    part.ln.append(length)
    part.kind.append(kind)
    part.idh.append(idh)
    rows = part.by_session.get(sidx)
    if rows is None:
        rows = part.by_session[sidx] = array("i")
    rows.append(row)
    if ts > part.max_ts.get(writer, -1):
        part.max_ts[writer] = ts
    ref = part.no << 32 | row
    if idem is not None:
        state.idem.setdefault(idem, ref)
    key = (ts, writer, seq, idh)
    result.touched.add(sidx)
    head = state.heads.get(sidx)
    if head is None or key > head[0]:
        state.heads[sidx] = (key, ref, kind)
    hist = state.histories.get(sidx)
    if hist is not None and not hist.push(key, ref, kind):
        del state.histories[sidx]  # arrived out of order (a merge): sort again on demand
    if state.latest is not None:
        if kind == SNAPSHOT and key > state.latest[0]:
            state.latest = (key, sidx, ref)
        elif kind == DELETE and sidx == state.latest[1]:
            state.latest = None
    return row


def _recompute_head(state: Rows, sidx: int) -> None:
    best: Head | None = None
    for part in state.by_no.values():
        for row in part.by_session.get(sidx, ()):
            key = state.key(part.no << 32 | row)
            if best is None or key > best[0]:
                best = (key, part.no << 32 | row, part.kind[row])
    if best is None:
        state.heads.pop(sidx, None)
    else:
        state.heads[sidx] = best


def fold_range(folder: str, user: str, name: str, start: int, end: int) -> dict[str, Any]:
    """Fold the lines of `folder/name` from `start` up to `end` into fresh rows (run in a child
    process by `childfold.fold_in_halves`); returns them as plain, picklable values."""
    state = Rows(Path(folder), user)
    state.erased = erase.load(erase.folder_of(state.folder))
    part = new_part(state, name)
    part.consumed = start
    result = FoldResult()
    fd = os.open(part.path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fold_lines(state, part, fd, result, end=end)
    finally:
        os.close(fd)
    heads = state.heads
    return {
        "sessions": state.session_names,
        "writers": state.writer_names,
        "columns": {a: getattr(part, a).tobytes() for a, _ in COLUMNS},
        "by_session": {s: rows.tobytes() for s, rows in part.by_session.items()},
        "heads": {s: (*key, ref & 0xFFFF_FFFF, kind) for s, (key, ref, kind) in heads.items()},
        "idem": {k: r & 0xFFFF_FFFF for k, r in state.idem.items()},
        "max_ts": part.max_ts,
        "problems": [(p.offset, p.reason) for p in part.problems],
        "problem_count": part.problem_count,
        "hidden": part.hidden,
        "consumed": part.consumed,
    }


def fold_child() -> None:
    """Entry point of a `fold_in_halves` child started as a subprocess: fold a range, pickle
    its rows to a descriptor."""

    folder, user, name, start, end, out_fd = sys.argv[1:7]
    write_rows(fold_range(folder, user, name, int(start), int(end)), int(out_fd))
