"""Writing on the PostgreSQL engine (docs/decisions.md, "PostgreSQL"): jobs inserted at their
sessions' next positions, one or many in one transaction, and the group commit of a server's
event loop — the POSTs that arrive during one turn of it share one transaction and one commit,
as the file engine's share one write and one fsync.

A transaction takes the head rows of its sessions `FOR UPDATE` in one order (user, session), so
two replicas' batches wait for each other and never deadlock; reads, then writes, each in one
round trip (psycopg's pipeline), then the commit. A batch that meets another writer's key (an
Idempotency-Key claimed meanwhile, a new session's first position) is written again one job at
a time, where each job retries or answers on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from psycopg.types.json import Jsonb

from ..answers import snapshot_of
from ..codec import Event, encode, id_hash, ms_to_ts, uuid7
from ..model import Snapshot, counts
from ..write import WriteJob
from .search import DOC_SQL, search_doc

WRITER = "postgres"  # the writer of every event this engine stores (its seq: one sequence)
FILTER_FIELDS = ("event", "project_path", "git_branch")  # the columns of `events` search filters
# What a job came to: its snapshot, None (a delete), or the error it met.
Outcome = Snapshot | BaseException | None


def insert_jobs(conn: Any, jobs: list[WriteJob]) -> list[Any]:
    """Insert `jobs` (inside the caller's transaction), in order: the snapshot of each (None for
    a tombstone)."""
    keys = sorted({(j.user, j.session_id) for j in jobs})
    with conn.pipeline():
        clock = conn.execute(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint, "
            "array(SELECT nextval('sessionmem_seq') FROM generate_series(1, %s))",
            (len(jobs),),
        )
        found = conn.execute(
            "SELECT user_id, session_id, pos, epoch, live, ts_ms FROM heads WHERE "
            "(user_id, session_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
            "ORDER BY user_id, session_id FOR UPDATE",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
    now, seqs = clock.fetchone()
    heads = {(r[0], r[1]): tuple(r[2:]) for r in found.fetchall()}
    answers: list[Any] = []
    rows = []
    for job, seq in zip(jobs, seqs, strict=True):
        pos, epoch, live, last_ts = heads.get((job.user, job.session_id), (0, 0, 0, 0))
        ts = max(int(now), last_ts + 1)
        if job.kind == "delete":
            version, new_epoch, new_live = 0, epoch + 1, 0
        else:
            version, new_epoch, new_live = live + 1, epoch, live + 1
        event_id = job.snapshot_id or uuid7(ts)
        ev = Event(event_id, job.kind, job.user, job.session_id, WRITER, int(seq), ms_to_ts(ts),
                   job.data, job.idem, job.body)  # fmt: skip
        rows.append((ev, encode(ev), pos + 1, epoch, version, new_epoch, new_live))
        heads[(job.user, job.session_id)] = (pos + 1, new_epoch, new_live, ts)
        answers.append(snapshot_of(ev, version) if job.kind == "snapshot" else None)
    with conn.pipeline():
        insert_events(conn, rows)
        for user in sorted({j.user for j in jobs}):
            conn.execute("SELECT pg_notify('sessionmem', %s)", (user,))
    return answers


class LoopBatches:
    """The group commit of one server's event loop: the items submitted during a turn of it go
    to `run_many` together, on a thread, at most `IN_FLIGHT` batches at a time (the items that
    come meanwhile wait, and go together after). Writes batch so (one transaction, one commit),
    and so do the hot reads (one round trip answers every GET of the turn): a batch always starts
    after each of its items arrived, so it sees every write acknowledged before."""

    IN_FLIGHT = 2  # one batch's round trips overlap the next one's Python

    def __init__(self, run_many: Callable[[list[Any]], list[Any]]):
        self._run_many = run_many
        self._queues: dict[Any, list[tuple[Any, asyncio.Future[Any]]]] = {}
        self._busy: dict[Any, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def write(self, item: Any) -> Any:
        """`item`'s outcome (an exception in its place is raised)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
            if self._busy.get(loop, 0) < self.IN_FLIGHT:
                loop.call_soon(self._flush, loop)
        queue.append((item, future))
        return await future

    def _flush(self, loop: Any) -> None:
        batch = self._queues.pop(loop, None)
        if not batch:
            return
        self._busy[loop] = self._busy.get(loop, 0) + 1
        task = loop.create_task(self._run(loop, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, loop: Any, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            outcomes = await asyncio.to_thread(self._run_many, [item for item, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - every waiting request hears of it
            outcomes = [exc] * len(batch)
        finally:
            self._busy[loop] -= 1
            if loop in self._queues:  # what arrived meanwhile goes next
                loop.call_soon(self._flush, loop)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


_EVENT_SQL = (
    "INSERT INTO events (user_id, session_id, pos, epoch, version, type, id, ts_ms, writer, seq, "
    "idh, line, ts, event, project_path, git_branch, agent, counts, doc) VALUES "
    "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,{doc})"
)
_HEAD_SQL = (
    "INSERT INTO heads VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
    "ON CONFLICT (user_id, session_id) DO UPDATE SET pos = EXCLUDED.pos, "
    "epoch = EXCLUDED.epoch, live = EXCLUDED.live, type = EXCLUDED.type, "
    "ts_ms = EXCLUDED.ts_ms, writer = EXCLUDED.writer, seq = EXCLUDED.seq, "
    "idh = EXCLUDED.idh, id = EXCLUDED.id, event = EXCLUDED.event, "
    "project_path = EXCLUDED.project_path, git_branch = EXCLUDED.git_branch, "
    "agent = EXCLUDED.agent, counts = EXCLUDED.counts"
)


def insert_event(
    conn: Any,
    ev: Event,
    line: bytes,
    pos: int,
    epoch: int,
    version: int,
    new_epoch: int,
    new_live: int,
) -> None:
    """Insert one event at `pos` of its session (a UniqueViolation if another writer took the
    position, the id or the Idempotency-Key first), and make it the session's head."""
    insert_events(conn, [(ev, line, pos, epoch, version, new_epoch, new_live)])


def insert_events(conn: Any, rows: list[tuple[Event, bytes, int, int, int, int, int]]) -> None:
    """`insert_event` for each row, in order: one `executemany` per statement (the events with
    search text, those without, the Idempotency-Keys), and each session's head written once, as
    its last row leaves it."""
    events: dict[bool, list[tuple[Any, ...]]] = {True: [], False: []}
    idems: list[tuple[Any, ...]] = []
    heads: dict[tuple[str, str], tuple[Any, ...]] = {}
    for ev, line, pos, epoch, version, new_epoch, new_live in rows:
        idh = id_hash(ev.id)
        data = ev.data
        meta = data.get("metadata")
        agent = text_or_none(meta.get("agent") if isinstance(meta, dict) else None)
        n = counts(data)
        doc = search_doc(data) if ev.type == "snapshot" else None
        events[doc is not None].append(
            (ev.user, ev.session_id, pos, epoch, version, ev.type, ev.id, ev.ts_ms, ev.writer,
             ev.seq, idh, line, ev.ts, *(text_or_none(data.get(k)) for k in FILTER_FIELDS),
             agent, list(n.values()), *(doc or ()))
        )  # fmt: skip
        if ev.idem is not None and ev.body is not None:
            idems.append((ev.user, ev.idem, ev.id, ev.body))
        heads[(ev.user, ev.session_id)] = (
            ev.user, ev.session_id, pos, new_epoch, new_live, ev.type, ev.ts_ms, ev.writer, ev.seq,
            idh, ev.id, data.get("event"), data.get("project_path"), data.get("git_branch"),
            agent, Jsonb(n),
        )  # fmt: skip
    cur = conn.cursor()
    for with_doc, params in events.items():
        if params:
            cur.executemany(_EVENT_SQL.format(doc=DOC_SQL if with_doc else "NULL"), params)
    if idems:
        cur.executemany("INSERT INTO idempotency VALUES (%s, %s, %s, %s)", idems)
    cur.executemany(_HEAD_SQL, list(heads.values()))


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
