"""Group commit of whole appends (docs/decisions.md, "Speed"): writes made at the same time — by
threads, or by the requests one event loop serves — go to the log together: one writer lock, one
`write` of all their lines, one fsync. Each waiter is answered only once its line is durable.

Within one batch an `Idempotency-Key` or `snapshot_id` appears once: a second copy waits for the
next batch, where it finds the first one stored.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import StorageError
from .log import Appended, WouldBlock, fsync_dir
from .model import Snapshot

if TYPE_CHECKING:
    from typing import TypeAlias

    from .write import Outcome
    from .write import WriteJob as Job

    # Write jobs of one user with one append, blocking, and make them durable: their outcomes.
    WriteMany: TypeAlias = Callable[[str, list[Job]], list[Outcome]]
    # Write jobs of one user with one append without waiting for the lock (WouldBlock): their
    # outcomes, whether each was written (not found stored), and the append still to sync.
    BeginMany: TypeAlias = Callable[
        [str, list[Job]], tuple[list[Outcome], list[bool], Appended | None]
    ]
W = TypeVar("W")


def split(batch: list[tuple[Job, W]]) -> tuple[dict[str, list[tuple[Job, W]]], list[tuple[Job, W]]]:
    """A batch of writes by user, and those to leave for the next batch (a key seen twice)."""
    groups: dict[str, list[tuple[Job, W]]] = {}
    later: list[tuple[Job, W]] = []
    keys: set[tuple[str, str]] = set()
    for job, waiter in batch:
        mine = {("k", job.idem)} if job.idem else set()
        if job.snapshot_id:
            mine.add(("i", job.snapshot_id))
        if mine & keys:
            later.append((job, waiter))
            continue
        keys |= mine
        groups.setdefault(job.user, []).append((job, waiter))
    return groups, later


class _Done:
    """A thread's place in a batch: its outcome, once the leader wrote it."""

    __slots__ = ("ready", "outcome")

    def __init__(self) -> None:
        self.ready = False
        self.outcome: Outcome = None


class ThreadBatches:
    """Threads writing at the same time are written together: the first one in becomes the
    leader and writes every job queued meanwhile; the others wait for their outcome, and one
    of those leads the next batch."""

    def __init__(self, write_many: WriteMany):
        self._write_many = write_many
        self._queue: list[tuple[Job, _Done]] = []
        self._cond = threading.Condition(threading.Lock())
        self._leader = False

    def write(self, job: Job) -> Snapshot | None:
        done = _Done()
        with self._cond:
            self._queue.append((job, done))
            while not done.ready:
                if self._leader:
                    self._cond.wait()
                    continue
                self._leader = True
                batch, self._queue = self._queue, []
                self._cond.release()
                outcomes: list[tuple[_Done, Outcome]] = []
                later: list[tuple[Job, _Done]] = []
                try:
                    if len(batch) == 1:  # the common case: nobody else was writing
                        groups = {batch[0][0].user: batch}
                    else:
                        groups, later = split(batch)
                    for user, group in groups.items():
                        try:
                            results = self._write_many(user, [j for j, _ in group])
                        except Exception as exc:  # every job of the group fails with it
                            results = [exc] * len(group)
                        outcomes += [(d, r) for (_, d), r in zip(group, results, strict=True)]
                except BaseException as exc:  # never leave a waiting thread waiting forever
                    settled = {id(d) for d, _ in outcomes}
                    outcomes += [(d, exc) for _, d in batch if id(d) not in settled]
                    later = []
                    raise
                finally:
                    self._cond.acquire()
                    self._leader = False
                    self._queue[:0] = later  # same key as another job: the next batch
                    for waiter, got in outcomes:
                        waiter.ready, waiter.outcome = True, got
                    self._cond.notify_all()
        if isinstance(done.outcome, BaseException):
            raise done.outcome
        return done.outcome


class LoopBatches:
    """Appends submitted on an event loop during one turn of it are written together on the
    loop itself (no thread convoy around the writer lock); their fsync is awaited from one
    sync thread, which syncs every batch written since its last round."""

    def __init__(self, begin_many: BeginMany, write_many: WriteMany, durable: Callable[[], bool]):
        self._begin_many = begin_many
        self._write_many = write_many
        self._durable = durable
        self._queues: dict[Any, list[tuple[Job, Any]]] = {}  # event loop -> appends to write
        self.sync_thread: SyncThread | None = None

    async def write(self, job: Job) -> Snapshot | None:
        # lazy: asyncio costs 22 ms at start-up
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[Snapshot | None] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
            loop.call_soon(self._flush, loop)
        queue.append((job, future))
        return await future

    def close(self) -> None:
        if self.sync_thread is not None:
            self.sync_thread.stop()
            self.sync_thread = None

    def _flush(self, loop: Any) -> None:
        """Write every append queued on `loop` since its last turn, a batch per user."""
        # (a caller that went away before anything was written is left out)
        queue = [(job, f) for job, f in self._queues.pop(loop, []) if not f.cancelled()]
        groups, later = split(queue)
        if later:
            self._queues[loop] = later
            loop.call_soon(self._flush, loop)
        for user, group in groups.items():
            try:
                self._flush_group(loop, user, group)
            except BaseException as exc:  # never leave a request waiting forever
                _fail(group, exc)

    def _flush_group(self, loop: Any, user: str, group: list[tuple[Job, Any]]) -> None:
        # lazy: asyncio costs 22 ms at start-up
        import asyncio

        jobs = [job for job, _ in group]
        try:
            results, written, pending = self._begin_many(user, jobs)
        except WouldBlock:  # another process holds the writer lock: wait for it in a thread
            task = loop.create_task(asyncio.to_thread(self._write_many, user, jobs))
            task.add_done_callback(lambda t: _settle_all([f for _, f in group], t))
            return
        except BaseException as exc:
            _fail(group, exc)
            return

        futures = [f for _, f in group]

        def settle(failure: BaseException | None) -> None:
            _resolve(futures, unacknowledged(results, written, failure))

        if pending is None:
            settle(None)
        elif not self._durable():
            pending.done()
            settle(None)
        else:
            if self.sync_thread is None:
                self.sync_thread = SyncThread()
            self.sync_thread.submit(pending, lambda exc: loop.call_soon_threadsafe(settle, exc))


class SyncThread:
    """One thread that fsyncs appends in batches for an asyncio server.

    The event loop writes lines itself (no thread convoy on the GIL around the writer lock) and
    `submit`s each append; this thread takes every append submitted so far, syncs each file
    once, closes them and calls their `done`. An append submitted during a sync waits for the
    next one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[Appended, Callable[[BaseException | None], None]]] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.syncs = 0

    def submit(self, appended: Appended, done: Callable[[BaseException | None], None]) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sessionmem-sync", daemon=True
                )
                self._thread.start()
            self._queue.append((appended, done))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue and self._stopping:
                    return
                batch, self._queue = self._queue, []
            failure: BaseException | None = None
            try:
                seen: set[str] = set()
                for appended, _ in batch:
                    if appended.path not in seen:
                        seen.add(appended.path)
                        assert appended.file is not None
                        os.fsync(appended.file.fd)
                    for folder in appended.dirs:
                        fsync_dir(folder)
            except OSError as exc:
                failure = StorageError(f"Could not sync the log to disk: {exc}.")
            self.syncs += 1
            for appended, done in batch:
                appended.done()
                with contextlib.suppress(Exception):  # e.g. its event loop is closed by now
                    done(failure)


def unacknowledged(
    outcomes: list[Outcome], written: list[bool], failure: BaseException | None
) -> list[Outcome]:
    """Outcomes once the batch's fsync is done: if it failed, every job written by the batch
    fails with it (written, but not durable: not acknowledged)."""
    if failure is None:
        return outcomes
    return [failure if w else o for o, w in zip(outcomes, written, strict=True)]


def _fail(group: list[tuple[Job, Any]], exc: BaseException) -> None:
    _resolve([f for _, f in group], [exc] * len(group))


def _settle_all(futures: list[Any], task: Any) -> None:
    """Pass a finished `write_many` task's outcomes on to the futures of its jobs."""
    if task.cancelled():
        for future in futures:
            future.cancel()
    elif task.exception() is not None:
        _resolve(futures, [task.exception()] * len(futures))
    else:
        _resolve(futures, task.result())


def _resolve(futures: list[Any], outcomes: list[Any]) -> None:
    """Answer each waiting future with its outcome (an exception is raised in its waiter)."""
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():
            continue  # cancelled: its caller went away
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
