"""The PostgreSQL engine (docs/decisions.md, "PostgreSQL"): the `Engine` the HTTP app, the CLI
and MCP take, over one database that any number of `serve` replicas share.

Nothing is kept between requests but a connection pool (and the JSON of answers, keyed by their
bytes): every read asks the database, so a write through one replica is read through any other
at once. The hot GETs of one turn of a server's event loop share one round trip. A snapshot is
stored as the canonical line the file engine writes (its time from the database's clock, its
`seq` from one sequence, made dense per user when `copy` writes it to a folder), and read back
through the same code, so its JSON is the same bytes on both engines.

Writers of one session take its head row in turn and insert at its next position, the key that
decides (a loser retries); an Idempotency-Key is claimed in the same transaction as its event, so
a retry through any replica finds the first result.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ..answers import snapshot_of
from ..changes import Changes
from ..codec import LIST_FIELDS, decode, ms_to_ts
from ..errors import Conflict, FieldError, InvalidInput, NotFound, StorageError, first_line
from ..forget import Forgotten
from ..layout import check_user
from ..memory import EngineReads
from ..model import Filters, HistoryEntry, Page, SessionSummary, Snapshot
from ..pages import check_filters, check_get, decode_cursor, encode_cursor, no_session
from ..redact import redactor_from_config
from ..rules import check_limit, check_session_id, check_version
from ..search import check_time, parse_query, search_budget, until_end
from ..write import WriteJob, make_job
from . import forget as pg_forget
from . import schema
from .follow import Follower
from .hot import LATEST_SQL, NEWEST_SQL, HotReads, nothing_yet
from .keys import PgKeys
from .search import find as find_hits
from .write import LoopBatches, Outcome, insert_jobs

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..model import FilterArgs, SearchArgs, SessionsArgs

_RACES = (
    pg_errors.UniqueViolation,
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
)
RETRIES = 50  # a write that lost the race for its session's next position tries again
_HEAD_COLUMNS = "session_id, live, id, event, ts_ms, project_path, git_branch, counts"


class PgStore(HotReads, EngineReads):
    """Session memory in a PostgreSQL database (`url`: a `postgresql://` URL)."""

    blocking = True

    def __init__(self, url: str, *, pool_size: int = 10, redact: bool = True):
        self.url = url
        self.root = None  # (no memory folder: `Store.root`'s place)
        redactor = redactor_from_config({}) if redact else None
        self._redact: Callable[[dict[str, Any]], dict[str, Any]] = redactor or (lambda d: d)
        with connect_for_admin(url)() as conn:  # reachable, and at this code's schema
            schema.check(conn, _shown(url))
        self._pool_size = pool_size
        self._pool_lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        self._opened()
        self._keys = PgKeys(self._conn)
        self._batches = LoopBatches(self._write_many)
        self._reads = LoopBatches(self._read_many)
        self._answers: dict[tuple[bytes, int], bytes] = {}  # (line, live) -> its JSON
        self.changes = Changes()

    # --- plumbing -----------------------------------------------------------------------------

    def _opened(self) -> ConnectionPool[Any]:
        """The connection pool, opened again after `close` (the store stays usable, as the
        file engine's does)."""
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    pool = ConnectionPool(self.url, min_size=1, max_size=self._pool_size,
                                          open=False, kwargs={"autocommit": True})  # fmt: skip
                    try:
                        pool.open(wait=True, timeout=10)
                    except PoolTimeout:
                        pool.close()
                        raise StorageError(
                            f"Could not connect to the database {_shown(self.url)}."
                        ) from None
                    self._pool = pool
        return pool

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; a database that went away is one StorageError (503, retry)."""
        try:
            with self._opened().connection(timeout=10) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StorageError(f"The database is not answering ({first_line(exc)}).") from None

    def close(self) -> None:
        """Close the connections (the next call opens them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def keys(self) -> PgKeys:
        return self._keys

    def follower(self) -> Follower:
        """LISTEN for other replicas' writes (`pg.follow`): tells `changes`, and forgets the
        keys remembered when one is revoked."""
        return Follower(self.url, self.changes.changed, self._keys.forget_keys)

    def secret(self, name: str) -> bytes:
        """A random secret kept in the database (`sessionmem_meta`), made on first use: every
        replica reads the same one."""
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO sessionmem_meta VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                ("secret:" + name, secrets.token_hex(32)),
            )
            row = conn.execute(
                "SELECT value FROM sessionmem_meta WHERE key = %s", ("secret:" + name,)
            ).fetchone()
        assert row is not None  # (inserted above, and never deleted)
        return bytes.fromhex(row[0])

    def users(self) -> list[str]:
        with self._conn() as conn:
            rows = conn.execute("SELECT DISTINCT user_id FROM heads ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    # --- writing ------------------------------------------------------------------------------

    def save(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Snapshot:
        job = make_job(user, body, idempotency_key, self._redact)
        snap = self._write(job)
        assert snap is not None
        return snap

    append = save

    async def save_async(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Snapshot:
        """`save` for an asyncio server: the saves of one turn of its loop are written in one
        transaction (`pg.write.LoopBatches`)."""
        job = make_job(user, body, idempotency_key, self._redact)
        snap: Snapshot = await self._batches.write(job)
        return snap

    append_async = save_async

    def delete(self, user: str, session_id: str) -> int:
        check_user(user)
        check_session_id(session_id)
        with self._conn() as conn:
            head = _head(conn, user, session_id)
        if head is None or head["type"] == "delete":
            raise no_session(session_id, user)
        self._write(WriteJob(user, session_id, "delete", {}, None, None, None))
        return int(head["live"])

    def _write(self, job: WriteJob) -> Snapshot | None:
        for attempt in range(RETRIES):
            with self._conn() as conn:
                stored = self._stored(conn, job)
                if stored is not None:
                    return stored
                try:
                    with conn.pipeline(), conn.transaction():  # the COMMIT rides along
                        answer: Snapshot | None = insert_jobs(conn, [job])[0]
                    return answer
                except _RACES:
                    pass  # another writer took the position, the key or the id: read again
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise StorageError(f"Too many writers on session {job.session_id!r} at once; retry.")

    def _write_many(self, jobs: list[WriteJob]) -> list[Outcome]:
        """Jobs written in one transaction; when it meets another writer (or a job is a retry),
        one at a time instead, each with its own retries and answer."""
        if len(jobs) > 1 and all(j.idem is None and j.snapshot_id is None for j in jobs):
            try:
                with self._conn() as conn, conn.pipeline(), conn.transaction():
                    answers = insert_jobs(conn, jobs)
                return answers
            except _RACES:
                pass
        outcomes: list[Outcome] = []
        for job in jobs:
            try:
                outcomes.append(self._write(job))
            except Exception as exc:  # noqa: BLE001 - this job's own answer (409, 503, ...)
                outcomes.append(exc)
        return outcomes

    def _stored(self, conn: Any, job: WriteJob) -> Snapshot | None:
        """The first result of a retry (same Idempotency-Key, or same snapshot_id)."""
        if job.idem is not None:
            row = conn.execute(
                "SELECT i.body_hash, e.line, e.version FROM idempotency i JOIN events e ON "
                "e.user_id = i.user_id AND e.id = i.event_id WHERE i.user_id = %s AND "
                "i.key_hash = %s",
                (job.user, job.idem),
            ).fetchone()
            if row is not None:
                if row[0] != job.body:
                    raise Conflict(
                        "This Idempotency-Key was already used with a different body. "
                        "Use a new key for a new snapshot."
                    )
                return snapshot_of(decode(bytes(row[1])), row[2])
        if job.snapshot_id is not None:
            row = conn.execute(
                "SELECT line, version FROM events WHERE user_id = %s AND id = %s",
                (job.user, job.snapshot_id),
            ).fetchone()
            if row is not None:
                ev = decode(bytes(row[0]))
                if ev.session_id != job.session_id or ev.data != job.data or ev.type != "snapshot":
                    raise Conflict(
                        f"snapshot_id {job.snapshot_id} is already stored with different "
                        "content. Send a new snapshot_id for a new snapshot."
                    )
                return snapshot_of(ev, row[1])
        return None

    def forget(self, user: str, session_id: str) -> Forgotten:
        """Erase every event of a session (docs/decisions.md, "Forgetting"): the rows go, an
        erase record of ids and hashes is kept (`pg.forget`)."""
        with self._conn() as conn:
            return pg_forget.forget_session(conn, user, session_id)

    def forget_text(self, text: str) -> Forgotten:
        """Replace `text` with [REDACTED] in every stored event (`pg.forget`)."""
        with self._conn() as conn:
            return pg_forget.forget_text(conn, text)

    def prune(
        self, user: str, *, keep_versions: int | None = None, older_than_ms: int | None = None
    ) -> Forgotten:
        """Erase each session's older snapshots; the newest is always kept (`pg.forget`)."""
        with self._conn() as conn:
            return pg_forget.prune(conn, user, keep_versions, older_than_ms)

    # --- reading ------------------------------------------------------------------------------

    def latest(self, user: str, **filters: Unpack[FilterArgs]) -> Snapshot:
        checked = check_filters(Filters(**filters))
        where, args = _filter_sql(checked)
        with self._conn() as conn:
            row = conn.execute(LATEST_SQL.format(where=where), (check_user(user), *args)).fetchone()
        if row is None:
            if checked.any():
                raise NotFound("No snapshot matches these filters.", what="filters")
            raise nothing_yet(user)
        return snapshot_of(decode(bytes(row[0])), row[1])

    def get(
        self,
        user: str,
        session_id: str,
        *,
        version: int | str | None = None,
        snapshot_id: str | None = None,
    ) -> Snapshot:
        version, snapshot_id = check_get(user, session_id, version, snapshot_id)
        with self._conn() as conn:
            if version is None and snapshot_id is None:  # the newest: one query (GET by id)
                row = conn.execute(NEWEST_SQL, (user, session_id)).fetchone()
                if row is None:
                    raise no_session(session_id, user)
                return snapshot_of(decode(bytes(row[0])), row[1])
            head = _head(conn, user, session_id)
            if head is None or head["type"] == "delete":
                raise no_session(session_id, user)
            total = head["live"]
            if snapshot_id is not None:
                row = conn.execute(
                    "SELECT line, version FROM events WHERE user_id = %s AND session_id = %s "
                    "AND epoch = %s AND id = %s AND type = 'snapshot'",
                    (user, session_id, head["epoch"], snapshot_id),
                ).fetchone()
                if row is None:
                    raise NotFound(
                        f"Session {session_id!r} of user {user!r} has no snapshot {snapshot_id}.",
                        what="version",
                    )
                return snapshot_of(decode(bytes(row[0])), row[1])
            n = total if version is None else version
            if not 1 <= n <= total:
                raise NotFound(
                    f"Session {session_id!r} has versions 1 to {total}; there is no version {n}.",
                    what="version",
                )
            row = conn.execute(
                "SELECT line FROM events WHERE user_id = %s AND session_id = %s AND epoch = %s "
                "AND version = %s",
                (user, session_id, head["epoch"], n),
            ).fetchone()
        if row is None:  # forgotten meanwhile
            raise no_session(session_id, user)
        return snapshot_of(decode(bytes(row[0])), n)

    def versions(self, user: str, session_id: str, numbers: list[int]) -> list[Snapshot]:
        """These versions of a session in one query (the web page's timeline)."""
        check_get(user, session_id, None, None)
        with self._conn() as conn:
            head = _head(conn, user, session_id)
            if head is None or head["type"] == "delete":
                raise no_session(session_id, user)
            rows = conn.execute(
                "SELECT version, line FROM events WHERE user_id = %s AND session_id = %s AND "
                "epoch = %s AND version = ANY(%s)",
                (user, session_id, head["epoch"], [check_version(n) for n in numbers]),
            ).fetchall()
        found = {v: line for v, line in rows}
        missing = [n for n in numbers if n not in found]
        if missing:
            raise NotFound(f"Session {session_id!r} has no version {missing[0]}.", what="version")
        return [snapshot_of(decode(bytes(found[n])), n) for n in numbers]

    def history(
        self, user: str, session_id: str, *, limit: int | str = 50, cursor: str | None = None
    ) -> Page:
        check_user(user)
        check_session_id(session_id)
        limit = check_limit(limit)
        below = decode_cursor(cursor, "v")
        with self._conn() as conn:
            head = _head(conn, user, session_id)
            if head is None or head["type"] == "delete":
                raise no_session(session_id, user)
            top = head["live"] if below is None else max(min(below - 1, head["live"]), 0)
            rows = conn.execute(
                "SELECT version, id, event, ts, counts FROM events WHERE user_id = %s AND "
                "session_id = %s AND epoch = %s AND version BETWEEN 1 AND %s "
                "ORDER BY version DESC LIMIT %s",
                (user, session_id, head["epoch"], top, limit),
            ).fetchall()
        items = [
            HistoryEntry(version, str(id_), event or "", ts, dict(zip(LIST_FIELDS, n, strict=True)))
            for version, id_, event, ts, n in rows
        ]
        nxt = items[-1].version if items and items[-1].version > 1 else None
        return Page(items, encode_cursor("v", nxt) if nxt else None)

    def sessions(self, user: str, **args: Unpack[SessionsArgs]) -> Page:
        check_user(user)
        unknown = set(args) - {"project_path", "git_branch", "event", "agent", "limit", "cursor"}
        if unknown:
            raise TypeError(f"sessions() got unexpected arguments {sorted(unknown)}")
        limit = check_limit(args.get("limit", 50))
        before = decode_cursor(args.get("cursor"), "s")
        checked = check_filters(Filters(**{k: v for k, v in args.items()  # type: ignore[arg-type]
                                            if k not in ("limit", "cursor")}))  # fmt: skip
        where, params = _filter_sql(checked)
        if before is not None:
            where += " AND (h.ts_ms, h.writer, h.seq, h.idh) < (%s, %s, %s, %s)"
            params = [*params, *before]
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {_HEAD_COLUMNS}, ts_ms, writer, seq, idh FROM heads h WHERE "
                f"h.user_id = %s AND h.type = 'snapshot'{where} ORDER BY h.ts_ms DESC, "
                "h.writer DESC, h.seq DESC, h.idh DESC LIMIT %s",
                (user, *params, limit + 1),
            ).fetchall()
        items = [
            SessionSummary(r[0], r[1], str(r[2]), r[3] or "", ms_to_ts(r[4]), r[5], r[6], r[7])
            for r in rows[:limit]
        ]
        nxt = encode_cursor("s", list(rows[limit - 1][8:12])) if len(rows) > limit else None
        return Page(items, nxt)

    def search(
        self,
        user: str,
        q: str,
        *,
        cancel: threading.Event | None = None,
        **args: Unpack[SearchArgs],
    ) -> Page:
        """The file engine's search (`Store.search`), with PostgreSQL's full-text search
        (`pg.search`): the same syntax, scopes, filters, liveness and paging."""
        unknown = set(args) - {"project_path", "git_branch", "event", "agent", "session_id",
                               "since", "until", "all_versions", "limit", "cursor"}  # fmt: skip
        if unknown:
            raise TypeError(f"search() got an unexpected keyword argument {min(unknown)!r}")
        check_user(user)
        parse_query(q)
        check_filters(Filters(event=args.get("event")))
        if args.get("session_id") is not None:
            check_session_id(args.get("session_id"))
        since, until = args.get("since"), args.get("until")
        check_time("since", since)
        check_time("until", until)
        limit = check_limit(args.get("limit", 20))
        start = decode_cursor(args.get("cursor"), "q") or 0
        where = {k: args.get(k) for k in ("project_path", "git_branch", "event", "agent",
                                          "session_id")}  # fmt: skip
        where.update(since=since, until=until and until_end(until))
        with self._conn() as conn:
            hits, nxt = find_hits(conn, user, q, where, bool(args.get("all_versions")), limit,
                                  start, search_budget())  # fmt: skip
        return Page(hits, encode_cursor("q", nxt) if nxt else None)


def _head(conn: Any, user: str, session_id: str) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT pos, epoch, live, type, ts_ms FROM heads WHERE user_id = %s AND session_id = %s",
        (user, session_id),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip(("pos", "epoch", "live", "type", "ts_ms"), row, strict=True))


def _filter_sql(filters: Filters) -> tuple[str, list[Any]]:
    where, args = "", []
    for column, value in zip(("project_path", "git_branch", "event", "agent"), filters,
                             strict=True):  # fmt: skip
        if value is not None:
            where += f" AND h.{column} = %s"
            args.append(value)
    return where, args


def _shown(url: str) -> str:
    """The URL without its password (it goes into messages and logs)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return url
    if "password" not in info:
        return url
    return url.replace(str(info["password"]), "***")


def connect_for_admin(url: str) -> Callable[[], psycopg.Connection[Any]]:
    """A plain connection (for `db upgrade` and `copy`): autocommit, one clear line when the
    database cannot be reached."""

    def connect() -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.ProgrammingError as exc:  # not a connection string at all
            raise InvalidInput(
                FieldError("database", f"must be a postgresql:// URL ({first_line(exc)}).")
            ) from None
        except psycopg.OperationalError as exc:
            raise StorageError(
                f"Could not connect to the database {_shown(url)} ({first_line(exc)})."
            ) from None

    return connect
