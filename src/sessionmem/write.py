"""The write engine: how a snapshot (or a tombstone) becomes a durable line, read top to bottom.

Store.save ─ Writer.job (checks, redaction, canonical data: the caller's thread)
           ─ ThreadBatches / LoopBatches (group commit: whoever leads writes the batch)
           ─ Writer.begin_many, under the writer lock (`Appender.locked`):
                 the retry check (Idempotency-Key, snapshot_id) ─ stamp, encode, add ─
                 one write ─ fold the lines into the view, in file order
           ─ the answer (`Answers.render`) ─ fsync (shared by the batch) ─ acknowledged
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from .batch import LoopBatches, ThreadBatches, unacknowledged
from .codec import Event, dumps, encode, loads, ms_to_ts, uuid7
from .errors import Conflict, Stale, StorageError, storage_error
from .layout import Layout, check_user
from .log import Appended, Appender
from .model import Snapshot, normalize_snapshot
from .projection import UserView
from .rules import check_idempotency_key, check_session_id

if TYPE_CHECKING:
    from .answers import Answers
    from .views import Views


class WriteJob(NamedTuple):
    """One write to make, checked and canonical (immutable)."""

    user: str
    session_id: str
    kind: str  # "snapshot" or "delete"
    data: dict[str, Any]
    snapshot_id: str | None
    idem: str | None  # sha256 of the Idempotency-Key
    body: str | None  # sha256 of the canonical body, with idem


# What a job came to: its snapshot, None (a delete), or the error it met.
Outcome = Snapshot | BaseException | None


class Writer:
    """Writes jobs for one memory folder: one per Store."""

    def __init__(
        self,
        layout: Layout,
        views: Views,
        answers: Answers,
        *,
        durable: bool,
        redactor: Callable[[dict[str, Any]], dict[str, Any]] | None,
        redact_section: Any,
    ):
        self.layout, self.views, self.answers, self.durable = layout, views, answers, durable
        self.appender = Appender(layout)
        self._redactor = redactor
        self._redact_section = redact_section  # the redactor is built on the first write
        self._writer: str | None = None
        self._scaffolded = False
        self._lock = threading.Lock()
        self._batches: tuple[ThreadBatches, LoopBatches] | None = None  # made on the first write

    @property
    def writer(self) -> str:
        if self._writer is None:
            self._writer = self.layout.writer_id()
        return self._writer

    # --- jobs ----------------------------------------------------------------------------

    def job(
        self, user: str, body: Mapping[str, Any], idempotency_key: str | None = None
    ) -> WriteJob:
        """The job of `POST /session` with `body`: checked, redacted, and with its data as a
        later read gives it back (keys sorted, numbers as JSON has them), so the answer to
        this write is byte for byte the answer to that read."""
        return make_job(user, body, idempotency_key, self._redact)

    @staticmethod
    def delete_job(user: str, session_id: str) -> WriteJob:
        check_user(user)
        check_session_id(session_id)
        return WriteJob(user, session_id, "delete", {}, None, None, None)

    def _redact(self, data: dict[str, Any]) -> dict[str, Any]:
        if self._redact_section is not None:
            # lazy: .redact costs 1.1 ms at start-up
            from .redact import redactor_from_config

            with self._lock:  # several threads may make their first write at once
                if self._redact_section is not None:
                    self._redactor = redactor_from_config(self._redact_section)
                    self._redact_section = None
        return self._redactor(data) if self._redactor is not None else data

    # --- writing -------------------------------------------------------------------------

    def write(self, job: WriteJob) -> Snapshot | None:
        """Write one job and make it durable, together with other threads' (group commit):
        its snapshot (None for a delete)."""
        return self._made_batches()[0].write(job)

    async def write_async(self, job: WriteJob) -> Snapshot | None:
        """`write` for an asyncio server: the jobs of one turn of the loop are written together
        on the loop, their fsync awaited from a sync thread."""
        return await self._made_batches()[1].write(job)

    def write_many(self, user: str, jobs: list[WriteJob]) -> list[Outcome]:
        """Write jobs of one user with one append, then its fsync: each one's outcome."""
        outcomes, written, pending = self.begin_many(user, jobs)
        if pending is not None:
            try:
                self.appender.sync(pending, self.durable)
            except StorageError as exc:
                return unacknowledged(outcomes, written, exc)
        return outcomes

    def begin_many(
        self, user: str, jobs: list[WriteJob], *, blocking: bool = True
    ) -> tuple[list[Outcome], list[bool], Appended | None]:
        """Write jobs of one user with one append, not synced yet: each one's outcome, whether
        it was written (not found stored already), and the append to sync (None if nothing
        was written). With `blocking=False`, raise `WouldBlock` rather than wait for the lock."""
        self._scaffold()
        writer = self.writer
        view = self.views.get(user)
        outcomes: list[Outcome] = [None] * len(jobs)
        written = [False] * len(jobs)
        events: list[tuple[int, Event]] = []
        appended: list[Appended] = []
        refs: list[int | None] = []
        min_ts = view.other_writers_max_ts(writer) + 1
        with self.appender.locked(user, writer, min_ts_ms=min_ts, blocking=blocking) as log:
            for i, job in enumerate(jobs):
                try:
                    # Under the lock: two workers retrying one request cannot both store it.
                    found = self._stored(job) if job.idem or job.snapshot_id else None
                    if found is not None:
                        outcomes[i] = found
                        continue
                    stamp = log.next_stamp()
                    ev = Event(
                        id=job.snapshot_id or uuid7(stamp[1]),
                        type=job.kind,
                        user=user,
                        session_id=job.session_id,
                        writer=writer,
                        seq=stamp[0],
                        ts=ms_to_ts(stamp[1]),
                        data=job.data,
                        idem=job.idem,
                        body=job.body,
                    )
                    log.add(encode(ev), stamp)
                except Exception as exc:  # this job only (e.g. Conflict); the others go on
                    outcomes[i] = exc
                    continue
                events.append((i, ev))
            try:
                appended = log.write()
            except StorageError as exc:
                for i, _ in events:
                    outcomes[i] = exc
                return outcomes, written, None
            try:
                # Still under the lock, so the lines are folded in file order.
                refs = [
                    view.note_append(a, ev) for a, (_, ev) in zip(appended, events, strict=True)
                ]
            except BaseException:
                appended[0].done()
                raise
        for (i, ev), a, ref in zip(events, appended, refs, strict=True):
            written[i] = True
            if ev.type == "snapshot":
                try:
                    outcomes[i] = self._answer(view, a, ev, ref)
                except Exception as exc:  # stored, but not answerable: reported once synced
                    outcomes[i] = exc
        return outcomes, written, appended[0] if appended else None

    def _stored(self, job: WriteJob) -> Snapshot | None:
        """The stored result of a retry (same Idempotency-Key, or same snapshot_id), if any;
        Conflict if the key or id was used for something else."""
        view = self.views.fresh(job.user)
        if job.idem is not None:
            ref = view.state.idem.get(job.idem)
            if ref is not None:
                ev = view.read(ref)
                if ev.body != job.body:
                    raise Conflict(
                        "This Idempotency-Key was already used with a different body. "
                        "Use a new key for a new snapshot."
                    )
                return self.answers.render(view, ev.session_id, ref)
        if job.snapshot_id is not None:
            for ref in view.find_id(job.snapshot_id):
                ev = view.read(ref)
                if ev.id != job.snapshot_id:
                    continue
                if ev.session_id != job.session_id or ev.data != job.data or ev.type != "snapshot":
                    raise Conflict(
                        f"snapshot_id {job.snapshot_id} is already stored with different "
                        "content. Send a new snapshot_id for a new snapshot."
                    )
                return self.answers.render(view, job.session_id, ref)
        return None

    def _answer(self, view: UserView, a: Appended, ev: Event, ref: int | None) -> Snapshot:
        for attempt in range(5):
            if ref is None:
                view.refresh()
                ref = _ref_at(view, a.path, a.offset)
            if ref is not None:
                try:
                    return self.answers.render(view, ev.session_id, ref, ev, len(a.line))
                except Stale as exc:
                    if attempt:
                        view.invalidate(exc.part)
            ref = None
        raise Stale(a.offset)

    # --- plumbing ------------------------------------------------------------------------

    def _scaffold(self) -> None:
        if not self._scaffolded:
            try:
                if not self.layout.scaffolded():
                    self.layout.ensure()
                self.writer  # noqa: B018 - made (and written down) once, before the lock
            except OSError as exc:
                raise storage_error(f"set up the memory folder {self.layout.root}", exc) from exc
            self._scaffolded = True

    def _made_batches(self) -> tuple[ThreadBatches, LoopBatches]:
        """The group commit of threads' writes and of an event loop's, made on first use."""
        if self._batches is None:
            with self._lock:
                if self._batches is None:
                    self._batches = (
                        ThreadBatches(self.write_many),
                        LoopBatches(
                            partial(self.begin_many, blocking=False),
                            self.write_many,
                            lambda: self.durable,
                        ),
                    )
        return self._batches

    def close(self) -> None:
        self.appender.close()
        if self._batches is not None:
            self._batches[1].close()


def make_job(
    user: str,
    body: Mapping[str, Any],
    idempotency_key: str | None,
    redact: Callable[[dict[str, Any]], dict[str, Any]],
) -> WriteJob:
    """The job of `POST /session` with `body` on any engine: checked, redacted, its data as a
    later read gives it back, and the hashes a retry is recognised by."""
    check_user(user)
    session_id, snapshot_id, data = normalize_snapshot(body)
    data = loads(dumps(redact(data)))
    idem = body_hash = None
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
        idem = _sha256(idempotency_key.encode())
        body_hash = _sha256(encode_body(session_id, snapshot_id, data))
    return WriteJob(user, session_id, "snapshot", data, snapshot_id, idem, body_hash)


def encode_body(session_id: str, snapshot_id: str | None, data: dict[str, Any]) -> bytes:
    return dumps({"session_id": session_id, "snapshot_id": snapshot_id, "data": data})


def _sha256(raw: bytes) -> str:
    # lazy: hashlib costs 3 ms at start-up
    import hashlib  # only for writes with an Idempotency-Key (the CLI starts without it)

    return hashlib.sha256(raw).hexdigest()


def _ref_at(view: UserView, path: str, offset: int) -> int | None:
    """The ref of the row folded from `offset` of the file at `path`, if folded."""
    with view.state.lock:
        part = view.state.parts.get(os.path.basename(path))
        if part is None:
            return None
        for row in range(len(part.off) - 1, -1, -1):
            if part.off[row] == offset:
                return part.no << 32 | row
            if part.off[row] < offset:
                break
    return None
