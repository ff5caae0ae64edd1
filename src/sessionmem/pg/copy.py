"""`sessionmem copy FROM TO` (docs/decisions.md, "PostgreSQL"): every user's events — snapshots
and tombstones, as their very lines — and erase records, from a memory folder or a database to a
memory folder or a database. Idempotent by event id: what the target holds already is not copied
again, so a second run copies nothing.

A database keeps each event's line as the file engine wrote it (writer, seq, time and all), so a
folder copied into a database and back holds the same lines, and every snapshot answers the same
bytes. Into a folder, lines go to `log/<user>/<writer>.jsonl` by the writer each one names, under
that writer's lock, in (ts, seq) order.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb

from .. import erase
from ..codec import Event, decode, encode, event_from_record
from ..errors import StorageError
from ..layout import Layout
from ..log import lock_path, touch_folder
from ..store import Store
from . import schema
from .engine import connect_for_admin
from .write import WRITER, insert_event


class Copied(NamedTuple):
    users: int
    events: int  # copied now (0 on a second run)
    erase_records: int


def is_database(where: str) -> bool:
    return where.startswith(("postgresql://", "postgres://"))


def copy(source: str, target: str) -> Copied:
    """Copy everything from `source` to `target` (each a memory folder or a postgresql:// URL)."""
    src = _Database(source) if is_database(source) else _Folder(Path(source), must_exist=True)
    dst = _Database(target) if is_database(target) else _Folder(Path(target), must_exist=False)
    users = events = records = 0
    try:
        for user in src.users():
            users += 1
            events += dst.add(user, src.events(user))
            records += dst.add_records(user, src.records(user))
        if events and isinstance(dst, _Database):
            # A bulk load leaves the planner's statistics behind: without them a search scans
            # every event of its user (20 ms instead of 2 at 20,000 events) until autovacuum.
            dst.conn.execute("ANALYZE events, heads")
    finally:
        src.close()
        dst.close()
    return Copied(users, events, records)


# --- a memory folder -------------------------------------------------------------------------


class _Folder:
    def __init__(self, root: Path, *, must_exist: bool):
        if must_exist and not (root / "log").is_dir():
            raise StorageError(f"No memory folder at {root} (it has no log/).")
        if root.exists() and not root.is_dir():
            raise StorageError(f"Cannot copy into {root}: it is a file, not a memory folder.")
        self.root = root
        self.layout = Layout(root)

    def users(self) -> list[str]:
        return Store(self.root, cache=False).users()

    def events(self, user: str) -> Iterator[tuple[bytes, Event]]:
        """Every event of `user`, session by session, each in its history's order."""
        store = Store(self.root, cache=False, redactor=None)
        view = store.view(user)
        for session_id in sorted(set(view.state.session_names) - {""}):
            hist = view.history(session_id)
            if hist is None:
                continue
            for record in view.read_records(list(hist.refs)):
                ev = event_from_record(record)
                yield encode(ev), ev

    def records(self, user: str) -> list[dict[str, Any]]:
        folder = erase.folder(self.root, user)
        out = []
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            if path.is_symlink():
                continue
            out += [r for r in map(erase.parse, path.read_bytes().splitlines()) if r]
        return out

    def add(self, user: str, events: Iterator[tuple[bytes, Event]]) -> int:
        have, last = self._ids(user), self._last_seq(user, WRITER)
        by_writer: dict[str, list[tuple[int, int, bytes]]] = {}
        for line, ev in events:
            if ev.id in have:
                continue
            have.add(ev.id)
            by_writer.setdefault(ev.writer, []).append((ev.ts_ms, ev.seq, line))
        if not by_writer:
            return 0
        if WRITER in by_writer:
            # The database's own lines share one sequence over every user: in a folder a
            # writer's seq is dense per file, so they are numbered on from the file's last.
            renumbered = []
            for n, (ts, _, line) in enumerate(sorted(by_writer[WRITER]), last + 1):
                renumbered.append((ts, n, encode(decode(line)._replace(seq=n))))
            by_writer[WRITER] = renumbered
        self.layout.ensure()
        folder = self.layout.log / user
        folder.mkdir(parents=True, exist_ok=True)
        for writer, lines in sorted(by_writer.items()):
            lines.sort()
            with open(lock_path(self.layout, user, writer), "a+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                fd = os.open(folder / f"{writer}.jsonl", flags, 0o644)
                try:
                    os.write(fd, b"".join(line for _, _, line in lines))
                    os.fsync(fd)
                finally:
                    os.close(fd)
        touch_folder(str(folder))
        return sum(len(v) for v in by_writer.values())

    def add_records(self, user: str, records: list[dict[str, Any]]) -> int:
        have = {r["id"] for r in self.records(user)}
        new = [r for r in records if r["id"] not in have]
        if not new:
            return 0
        folder = erase.folder(self.root, user)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "copied.jsonl", "ab") as f:
            f.write(b"".join(erase.encode(r) for r in new))
            f.flush()
            os.fsync(f.fileno())
        touch_folder(str(folder))
        return len(new)

    def _last_seq(self, user: str, writer: str) -> int:
        path = self.layout.log / user / f"{writer}.jsonl"
        seqs = [0]
        if path.is_file():
            for line in path.read_bytes().splitlines():
                try:
                    seqs.append(decode(line).seq)
                except ValueError:
                    continue
        return max(seqs)

    def _ids(self, user: str) -> set[str]:
        ids = set()
        for path in (self.layout.log / user).glob("*.jsonl"):
            for line in path.read_bytes().splitlines():
                try:
                    ids.add(decode(line).id)
                except ValueError:
                    continue
        return ids

    def close(self) -> None:
        pass


# --- a database ------------------------------------------------------------------------------


class _Database:
    def __init__(self, url: str):
        self.conn = connect_for_admin(url)()
        schema.check(self.conn, url)

    def users(self) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT user_id FROM events ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def events(self, user: str) -> Iterator[tuple[bytes, Event]]:
        cur = self.conn.execute(
            "SELECT line FROM events WHERE user_id = %s ORDER BY session_id, pos", (user,)
        )
        for (line,) in cur:
            raw = bytes(line)
            yield raw, decode(raw)

    def records(self, user: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT record FROM erased WHERE user_id = %s ORDER BY id",
                                 (user,)).fetchall()  # fmt: skip
        return [dict(r[0]) for r in rows]

    def add(self, user: str, events: Iterator[tuple[bytes, Event]]) -> int:
        """Append each event not here yet to its session, in the order given."""
        added = 0
        conn = self.conn
        for line, ev in events:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM events WHERE user_id = %s AND id = %s",
                                (user, ev.id)).fetchone():  # fmt: skip
                    continue
                head = conn.execute(
                    "SELECT pos, epoch, live FROM heads WHERE user_id = %s AND session_id = %s "
                    "FOR UPDATE", (user, ev.session_id)).fetchone()  # fmt: skip
                pos, epoch, live = (head[0] + 1, head[1], head[2]) if head else (1, 0, 0)
                snapshot = ev.type == "snapshot"
                version = live + 1 if snapshot else 0
                new_epoch, new_live = (epoch, live + 1) if snapshot else (epoch + 1, 0)
                insert_event(conn, ev, line, pos, epoch, version, new_epoch, new_live)
                added += 1
        return added

    def add_records(self, user: str, records: list[dict[str, Any]]) -> int:
        added = 0
        for r in records:
            cur = self.conn.execute(
                "INSERT INTO erased VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (r["id"], user, Jsonb(r)),
            )
            added += cur.rowcount
        return added

    def close(self) -> None:
        self.conn.close()
