"""`Store(root)`: the one implementation every surface calls (docs/http.md and README).

(Past our ~500-line habit: it is the library's whole public API — writes, reads, listings — and
splitting it would split one vocabulary across modules.)
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import cache
from .batch import Job, Outcome, unacknowledged
from .codec import (
    SNAPSHOT_EVENTS,
    Event,
    dumps,
    dumps_view,
    encode,
    id_hash,
    loads,
    ms_to_ts,
    normalize_uuid,
    uuid7,
)
from .config import read_config
from .errors import Conflict, FieldError, InvalidInput, NotFound, StorageError, storage_error
from .layout import Layout, check_user
from .log import DURABILITY_MODES, Appended, Appender
from .lru import ByteLRU
from .model import (
    Diff,
    Filters,
    HistoryEntry,
    Page,
    Problem,
    SessionSummary,
    Snapshot,
    check_session_id,
    counts,
    normalize_snapshot,
)
from .projection import SUMMARY_BYTES, Stale, UserView
from .rows import History

if TYPE_CHECKING:
    from .batch import LoopBatches, ThreadBatches
    from .memory import UserMemory

T = TypeVar("T")
MAX_LIMIT = 1000
CACHE_MIN_ROWS = 10_000  # fold at least this much before writing the cache again
HISTORY_CACHE_ENTRIES = 20_000  # history entries kept ready to list, over all sessions (~10 MB)
ANSWER_BYTES = 32 << 20  # newest answers kept ready to send, over all users and sessions
SMALL_ANSWER = 16 << 10  # an answer up to this size keeps its parsed snapshot too


def _sha256(raw: bytes | str) -> str:
    import hashlib

    if isinstance(raw, str):
        raw = raw.encode()
    return hashlib.sha256(raw).hexdigest()


class Store:
    """Session memory kept in the memory folder `root` (the one holding `log/` and `.local/`).

    Thread-safe, and safe to share a root between processes (server workers, the CLI, hooks):
    appends are serialised by a lock file and every read first folds what others appended.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        durability: str | None = None,
        redactor: Callable[[dict[str, Any]], dict[str, Any]] | None | str = "config",
        cache: bool | None = None,
    ):
        """`durability` and `redactor` default to `.memory/config.toml` (see `config`);
        pass `redactor=None` to store snapshots exactly as given. `cache` (default on, off
        with SESSIONMEM_CACHE=0) keeps the projection in `.local/cache/` between runs."""
        self.layout = Layout(root)
        self.root = self.layout.root
        config = read_config(self.root)
        # The redactor is built on the first write (reads need none, and it compiles patterns).
        self._redact_section: Any = config.get("redact", {}) if redactor == "config" else None
        durability = (
            durability
            or os.environ.get("SESSIONMEM_DURABILITY")
            or config.get("durability")
            or "durable"
        )
        if durability not in DURABILITY_MODES:
            raise InvalidInput(
                FieldError("durability", f"must be one of {', '.join(DURABILITY_MODES)}.")
            )
        self.durability = durability
        self._redactor: Callable[[dict[str, Any]], dict[str, Any]] | None = (
            redactor if callable(redactor) else None
        )
        if cache is None:
            cache = os.environ.get("SESSIONMEM_CACHE", "1") != "0"
        self.cache = cache
        self._writer: str | None = None
        self._views: dict[str, UserView] = {}
        self._lock = threading.Lock()
        self._appender = Appender(self.layout)
        self._batches: tuple[ThreadBatches, LoopBatches] | None = None  # made on the first write
        self._scaffolded = False
        # (user, session index) -> (its History, live start, entries of versions 1..n)
        self._entries: OrderedDict[tuple[str, int], tuple[Any, int, list[HistoryEntry]]]
        self._entries = OrderedDict()
        self._entry_count = 0
        # Each session's newest answer, ready to send (GET latest / by id), and the heads'
        # summaries for filtered listings: bounded in bytes, whatever the snapshots hold.
        self._answers = ByteLRU(ANSWER_BYTES)
        self._summaries = ByteLRU(SUMMARY_BYTES)

    # --- plumbing ------------------------------------------------------------------------

    def _made_batches(self) -> tuple[ThreadBatches, LoopBatches]:
        """The group commit of threads' appends and of an event loop's, made on first use."""
        if self._batches is None:
            from .batch import LoopBatches, ThreadBatches

            with self._lock:
                if self._batches is None:
                    self._batches = (
                        ThreadBatches(self._write_many),
                        LoopBatches(
                            partial(self._begin_many, blocking=False),
                            self._write_many,
                            lambda: self.durability == "durable",
                        ),
                    )
        return self._batches

    def _redact(self, data: dict[str, Any]) -> dict[str, Any]:
        if self._redact_section is not None:
            from .redact import redactor_from_config

            with self._lock:  # several threads may make their first write at once
                if self._redact_section is not None:
                    self._redactor = redactor_from_config(self._redact_section)
                    self._redact_section = None
        return self._redactor(data) if self._redactor is not None else data

    @property
    def writer(self) -> str:
        if self._writer is None:
            self._writer = self.layout.writer_id()
        return self._writer

    def _view(self, user: str) -> UserView:
        view = self._views.get(user)
        if view is None:
            check_user(user)
            with self._lock:
                view = self._views.get(user)
                if view is None:
                    view = UserView(self.layout.log / user, user)
                    view.summaries = self._summaries  # one byte budget for every user
                    if self.cache and cache.load(view, cache.cache_path(self.root, user)):
                        view.saved_rows = view.loaded_rows
                        view.saved_generation = view.generation
                    self._views[user] = view
        return view

    def view(self, user: str, *, force: bool = False) -> UserView:
        """The user's projection, brought up to date with the files on disk."""
        view = self._view(user)
        if view.refresh(force=force) and self.cache:
            self._maybe_save(view)
        return view

    def _maybe_save(self, view: UserView, *, always: bool = False) -> None:
        """Write the projection cache when much was folded since it was last written."""
        rows = view.event_count()
        fresh = rows - view.saved_rows
        # After a file was dropped and folded again the count may match while the rows do not.
        changed = view.generation != view.saved_generation
        if (
            (always and changed)
            or (changed and view.rebuilt)
            or fresh >= max(CACHE_MIN_ROWS, rows // 4)
        ):
            try:
                cache.save(view, cache.cache_path(self.root, view.user))
            except OSError:
                return  # a cache is only ever an optimisation
            view.saved_rows, view.saved_generation, view.rebuilt = rows, view.generation, False

    def save_cache(self) -> None:
        """Write the projection cache of every user folded since it was last written."""
        if self.cache:
            for view in list(self._views.values()):
                self._maybe_save(view, always=True)

    def close(self) -> None:
        """Save the projection cache, release the lock files and the sync thread this store
        holds (it stays usable)."""
        self.save_cache()
        self._appender.close()
        if self._batches is not None:
            self._batches[1].close()

    def _retry(self, user: str, fn: Callable[[UserView], T]) -> T:
        """Run a read; if a file changed under it (git checkout), fold that file again and run
        it again — after two misses, fold everything again. Stale (HTTP 503) only reaches the
        caller when the files keep changing through every try."""
        for attempt in range(6):
            view = self.view(user)
            try:
                return fn(view)
            except Stale as exc:
                if attempt < 2:
                    view.invalidate(exc.part)
                else:
                    view.reset()
        return fn(self.view(user))

    def users(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.layout.log) if e.is_dir())
        except FileNotFoundError:
            return []

    def problems(self, user: str | None = None) -> list[Problem]:
        users = [user] if user else self.users()
        return [p for u in users for p in self.view(u).problems()]

    # --- writing -------------------------------------------------------------------------

    def for_user(self, user: str) -> UserMemory:
        """This store bound to one user, with the `Client`'s vocabulary (`memory.Memory`)."""
        from .memory import UserMemory

        return UserMemory(self, check_user(user))

    def save(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Snapshot:
        """Store a full snapshot of a session (it replaces, it does not merge).

        `body` has the fields of `POST /session`. With `idempotency_key` (or a `snapshot_id` in
        the body) a retry returns the first result instead of storing a duplicate; the same key
        with a different body raises Conflict.
        """
        written = self._write(self._prepare(user, body, idempotency_key))
        assert written is not None
        return written[0]

    append = save  # the library's first name for it; `save` is every surface's word

    async def save_async(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Snapshot:
        """`append` for an asyncio server. Appends submitted on one event loop during one turn
        of it are written together — one lock, one `write` of all their lines — on the loop
        itself (no thread convoy around the writer lock), and their fsync is awaited from a
        thread that syncs concurrent batches together. Answers only once it is durable."""
        return (await self._append_async(self._prepare(user, body, idempotency_key)))[0]

    append_async = save_async

    async def save_json_async(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> bytes:
        """`save_async`, answering with the snapshot's JSON — byte for byte what a later
        `GET` of it returns (the HTTP server's POST)."""
        return (await self._append_async(self._prepare(user, body, idempotency_key)))[1]

    async def _append_async(self, job: Job) -> tuple[Snapshot, bytes]:
        written = await self._made_batches()[1].write(job)
        assert written is not None  # only deletes answer none, and they are not made here
        return written

    def _write(self, job: Job) -> tuple[Snapshot, bytes] | None:
        """Write one event and make it durable (together with other threads' writes: group
        commit); its snapshot and JSON (None for a delete)."""
        return self._made_batches()[0].write(job)

    def _prepare(self, user: str, body: Mapping[str, Any], idempotency_key: str | None) -> Job:
        check_user(user)
        session_id, snapshot_id, data = normalize_snapshot(body)
        data = self._redact(data)
        idem = body_hash = None
        if idempotency_key is not None:
            if not idempotency_key or len(idempotency_key) > 255:
                raise InvalidInput(
                    FieldError("Idempotency-Key", "must be 1-255 characters when sent.")
                )
            idem = _sha256(idempotency_key)
            body_hash = _sha256(encode_body(session_id, snapshot_id, data))
        return user, session_id, "snapshot", data, snapshot_id, idem, body_hash

    def delete(self, user: str, session_id: str) -> int:
        """Hide a session from every read by appending a tombstone. Returns how many versions
        it hid. Posting to the same id afterwards starts a new history at version 1."""
        check_session_id(session_id)
        hist = self.view(user).history(session_id)
        if hist is None or hist.deleted:
            raise _no_session(session_id, user)
        hidden = len(hist.refs) - hist.start
        self._write((user, session_id, "delete", {}, None, None, None))
        return hidden

    def _write_many(self, user: str, jobs: list[Job]) -> list[Outcome]:
        """`_write` for a batch: one append, then its fsync; each job's result or error."""
        results, written, pending = self._begin_many(user, jobs)
        if pending is not None:
            try:
                self._appender.sync(pending, self.durability == "durable")
            except StorageError as exc:
                return unacknowledged(results, written, exc)
        return results

    def _begin_many(
        self, user: str, jobs: list[Job], *, blocking: bool = True
    ) -> tuple[list[Outcome], list[bool], Appended | None]:
        """Write the events of `jobs` (all for `user`) with one append; returns each one's
        snapshot and JSON (None for a delete) or the error it met, whether it was written (not
        found already stored), and the append still to be synced (None if nothing was)."""
        if not self._scaffolded:
            try:
                if not self.layout.scaffolded():
                    self.layout.ensure()
                self.writer  # noqa: B018 - made (and written down) once, before the lock
            except OSError as exc:
                raise storage_error(f"set up the memory folder {self.root}", exc) from exc
            self._scaffolded = True
        writer = self.writer
        view = self._view(user)
        found: dict[int, tuple[Snapshot, bytes]] = {}
        built: dict[int, Event] = {}
        refs: dict[int, int | None] = {}
        items = []
        for i, (_, session_id, kind, data, snapshot_id, idem, body_hash) in enumerate(jobs):
            # What a later read gives back (keys sorted, numbers as JSON has them), so the
            # answer to this write is byte for byte the answer to that read.
            data = loads(dumps(data))
            event = partial(
                Event,
                type=kind,
                user=user,
                session_id=session_id,
                writer=writer,
                data=data,
                idem=idem,
                body=body_hash,
            )
            check = None
            if idem or snapshot_id:
                check = partial(
                    self._precheck, found, i, user, session_id, snapshot_id, idem, body_hash, data
                )
            items.append((partial(_build, built, i, event, snapshot_id), check))

        def written(i: int, a: Appended) -> None:
            # Under the writer lock, so our lines are folded in file order.
            refs[i] = view.note_append(a, built[i])

        appended = self._appender.append_many(
            user,
            writer,
            items,
            min_ts_ms=view.other_writers_max_ts(writer) + 1,
            written=written,
            blocking=blocking,
        )
        pending = next((a for a in appended if isinstance(a, Appended)), None)
        results: list[Outcome] = []
        for i, a in enumerate(appended):
            if isinstance(a, BaseException):
                results.append(a)
            elif a is None:
                results.append(found[i])
            elif jobs[i][2] == "delete":
                results.append(None)
            else:
                try:
                    results.append(self._answer(view, jobs[i][1], a, built[i], refs.get(i)))
                except Exception as exc:  # stored, but not answerable: report it once synced
                    results.append(exc)
        return results, [isinstance(a, Appended) for a in appended], pending

    def _precheck(self, found: dict[int, tuple[Snapshot, bytes]], i: int, *args: Any) -> bool:
        """Runs under the writer lock, so two workers retrying the same request cannot both
        store it: True (and the stored result in `found[i]`) if it is stored already."""
        existing = self._find_existing(*args)
        if existing is not None:
            found[i] = existing
            return True
        return False

    def _answer(
        self, view: UserView, session_id: str, a: Appended, ev: Event, ref: int | None
    ) -> tuple[Snapshot, bytes]:
        for attempt in range(5):
            if ref is None:
                view.refresh()
                ref = _ref_at(view, a.path, a.offset)
            if ref is not None:
                try:
                    return self._render(view, session_id, ref, ev)
                except Stale as exc:
                    if attempt:
                        view.invalidate(exc.part)
            ref = None
        raise Stale(a.offset)

    def _find_existing(
        self,
        user: str,
        session_id: str,
        snapshot_id: str | None,
        idem: str | None,
        body_hash: str | None,
        data: dict[str, Any],
    ) -> tuple[Snapshot, bytes] | None:
        view = self.view(user)
        if idem is not None:
            ref = view.idem.get(idem)
            if ref is not None:
                ev = view.read(ref)
                if ev.body != body_hash:
                    raise Conflict(
                        "This Idempotency-Key was already used with a different body. "
                        "Use a new key for a new snapshot."
                    )
                return self._render(view, ev.session_id, ref)
        if snapshot_id is not None:
            for ref in view.find_id(snapshot_id):
                ev = view.read(ref)
                if ev.id != snapshot_id:
                    continue
                if ev.session_id != session_id or ev.data != data or ev.type != "snapshot":
                    raise Conflict(
                        f"snapshot_id {snapshot_id} is already stored with different content. "
                        "Send a new snapshot_id for a new snapshot."
                    )
                return self._render(view, session_id, ref)
        return None

    def _render(
        self, view: UserView, session_id: str, ref: int, ev: Event | None = None
    ) -> tuple[Snapshot, bytes]:
        """The snapshot at `ref` and its JSON, cached for the newest snapshot of each session
        (GET latest and by id answer without re-serializing)."""
        hist = view.history(session_id)
        if hist is None:
            raise Stale(ref)
        total = len(hist.refs) - hist.start
        sidx = view.session_index[session_id]
        newest = total > 0 and hist.refs[-1] == ref
        key = (view.user, sidx)
        if newest:
            cached = self._answers.get(key)
            if cached is not None and cached[0] == ref and cached[1] == total:
                snap = cached[2] or Snapshot.from_view(loads(cached[3]))
                return snap, cached[3]
        version = _version_of(view, hist, ref)
        if version == 0:
            raise NotFound(f"That snapshot is no longer in session {session_id!r} (deleted).")
        ref = hist.refs[hist.start + version - 1]
        snap = _snapshot(ev if ev is not None else view.read(ref), version)
        raw = dumps_view(snap.view())
        if newest:
            # A small answer keeps its parsed snapshot too (the library's reads); a big one only
            # its JSON, a fraction of the parsed form.
            # (orjson's result keeps its growth buffer — up to 4x its length — so a big one is
            # kept as an exact copy.)
            small = len(raw) <= SMALL_ANSWER
            kept = raw if small else bytes(memoryview(raw))
            self._answers.put(
                key, (ref, total, snap if small else None, kept), len(raw) * (4 if small else 1)
            )
        return snap, raw

    # --- reading -------------------------------------------------------------------------

    def latest(
        self,
        user: str,
        *,
        project_path: str | None = None,
        git_branch: str | None = None,
        event: str | None = None,
    ) -> Snapshot:
        """The user's most recent snapshot over all sessions, optionally filtered."""
        return self._latest(user, Filters(project_path, git_branch, event))[0]

    def latest_json(self, user: str, **filters: str | None) -> bytes:
        """`latest`, as the JSON the HTTP API answers (cached: no re-serializing)."""
        return self._latest(user, Filters(**filters))[1]

    def _latest(self, user: str, filters: Filters) -> tuple[Snapshot, bytes]:
        def run(view: UserView) -> tuple[Snapshot, bytes]:
            if not filters.any():
                head = view.latest_head()
                if head is not None:
                    return self._render(view, view.session_names[head[0]], head[1])
            else:
                for _key, sidx, ref in view.live_heads():
                    summary = view.summary(sidx, ref)
                    if filters.match(summary.fields):
                        return self._render(view, summary.session_id, ref)
            if filters.any():
                raise NotFound("No snapshot matches these filters.", what="filters")
            raise NotFound(f"No snapshot stored yet for user {user!r}.", what="snapshot")

        _check_filters(filters)
        return self._retry(user, run)

    def get(
        self,
        user: str,
        session_id: str,
        *,
        version: int | str | None = None,
        snapshot_id: str | None = None,
    ) -> Snapshot:
        """A session's latest snapshot, or the one at `version` / with `snapshot_id` (replay)."""
        return self._get(user, session_id, version, snapshot_id)[0]

    def get_json(
        self,
        user: str,
        session_id: str,
        *,
        version: int | None = None,
        snapshot_id: str | None = None,
    ) -> bytes:
        """`get`, as the JSON the HTTP API answers (cached for the newest snapshot)."""
        return self._get(user, session_id, version, snapshot_id)[1]

    def _get(
        self, user: str, session_id: str, version: int | str | None, snapshot_id: str | None
    ) -> tuple[Snapshot, bytes]:
        check_session_id(session_id)
        if version is not None and snapshot_id is not None:
            raise InvalidInput(
                FieldError("version", "cannot be combined with snapshot_id; give one of them.")
            )
        if version is not None:
            version = check_version(version)
        if snapshot_id is not None:
            snapshot_id = check_snapshot_id(snapshot_id)

        def run(view: UserView) -> tuple[Snapshot, bytes]:
            hist = view.history(session_id)
            if hist is None or hist.deleted:
                raise _no_session(session_id, user)
            total = len(hist.refs) - hist.start
            if snapshot_id is not None:
                target = id_hash(snapshot_id)
                for i in range(len(hist.refs) - 1, hist.start - 1, -1):
                    ref = hist.refs[i]
                    if view.idh(ref) == target and view.read(ref).id == snapshot_id:
                        return self._render(view, session_id, ref)
                raise NotFound(
                    f"Session {session_id!r} of user {user!r} has no snapshot {snapshot_id}.",
                    what="version",
                )
            n = total if version is None else version
            if not 1 <= n <= total:
                raise NotFound(
                    f"Session {session_id!r} has versions 1 to {total}; there is no version {n}.",
                    what="version",
                )
            ref = hist.refs[hist.start + n - 1]
            if n == total:
                return self._render(view, session_id, ref)
            snap = _snapshot(view.read(ref), n)
            return snap, dumps_view(snap.view())

        return self._retry(user, run)

    def history(
        self, user: str, session_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """A session's snapshots, newest first, `limit` at a time; pass back `next_cursor`."""
        check_session_id(session_id)
        limit = _check_limit(limit)
        below = _decode_cursor(cursor, "v")

        def run(view: UserView) -> Page:
            hist = view.history(session_id)
            if hist is None or hist.deleted:
                raise _no_session(session_id, user)
            start = hist.start
            total = len(hist.refs) - start
            top = total if below is None else max(min(below - 1, total), 0)
            low = max(top - limit, 0)
            if total <= HISTORY_CACHE_ENTRIES // 2:
                items = self._history_entries(view, user, session_id, hist, start)[low:top][::-1]
            else:  # too long to keep: read just this page
                items = _entries(view, hist, start, range(top, low, -1))
            nxt = items[-1].version if items and items[-1].version > 1 else None
            return Page(items, _encode_cursor("v", nxt) if nxt else None)

        return self._retry(user, run)

    def _history_entries(
        self, view: UserView, user: str, session_id: str, hist: Any, start: int
    ) -> list[HistoryEntry]:
        """Every live version's entry, oldest first. Built once per session and kept (a History
        only ever grows at its end, so a new version reads just its own line): listing a long
        history costs a slice. The entries are shared: treat them as read-only."""
        key = (user, view.session_index[session_id])
        total = len(hist.refs) - start
        cached = self._entries.get(key)
        have: list[HistoryEntry] = []
        if cached is not None and cached[0] is hist and cached[1] == start:
            have = cached[2]
            if len(have) == total:
                with self._lock:
                    if key in self._entries:
                        self._entries.move_to_end(key)
                return have
        entries = have + _entries(view, hist, start, range(len(have) + 1, total + 1))
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._entry_count -= len(old[2])
            self._entries[key] = (hist, start, entries)
            self._entry_count += len(entries)
            while self._entry_count > HISTORY_CACHE_ENTRIES:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._entry_count -= len(dropped)
        return entries

    def diff(
        self,
        user: str,
        session_id: str,
        from_: int | str | None = None,
        to: int | str | None = None,
    ) -> Diff:
        """What changed between two snapshots (versions or snapshot ids) of a session.

        By default, from the previous snapshot to the latest.
        """
        check_session_id(session_id)
        latest = self.get(user, session_id)
        newer = self._resolve(user, session_id, to, "to") if to is not None else latest
        if from_ is None:
            if newer.version < 2:
                older = newer
            else:
                older = self.get(user, session_id, version=newer.version - 1)
        else:
            older = self._resolve(user, session_id, from_, "from")
        from .diff import diff_data

        return diff_data(older, newer)

    def _resolve(self, user: str, session_id: str, ref: int | str, name: str) -> Snapshot:
        if type(ref) is int or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
            return self.get(user, session_id, version=check_version(ref, name))
        sid = normalize_uuid(ref) if isinstance(ref, str) else None
        if sid is None:
            raise InvalidInput(
                FieldError(name, "must be a version number (1, 2, ...) or a snapshot id (a UUID).")
            )
        return self.get(user, session_id, snapshot_id=sid)

    def sessions(
        self,
        user: str,
        *,
        project_path: str | None = None,
        git_branch: str | None = None,
        event: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """The user's sessions, newest first, each with its latest snapshot's summary."""
        filters = _check_filters(Filters(project_path, git_branch, event))
        limit = _check_limit(limit)
        before = _decode_cursor(cursor, "s")

        def run(view: UserView) -> Page:
            items: list[SessionSummary] = []
            nxt = None
            last_key: tuple[Any, ...] = ()
            for key, sidx, ref in view.live_heads():
                if before is not None and list(key) >= before:
                    continue
                head = view.summary(sidx, ref)
                if not filters.match(head.fields):
                    continue
                if len(items) == limit:
                    nxt = _encode_cursor("s", last_key)
                    break
                hist = view.history(head.session_id)
                assert hist is not None
                items.append(
                    SessionSummary(
                        head.session_id,
                        len(hist.refs) - hist.start,
                        head.snapshot_id,
                        head.fields.get("event") or "",
                        head.ts,
                        head.fields.get("project_path"),
                        head.fields.get("git_branch"),
                        head.counts,
                    )
                )
                last_key = key
            return Page(items, nxt)

        return self._retry(user, run)


def encode_body(session_id: str, snapshot_id: str | None, data: dict[str, Any]) -> bytes:
    return dumps({"session_id": session_id, "snapshot_id": snapshot_id, "data": data})


def _version_of(view: UserView, hist: History, ref: int) -> int:
    """The live version of the event at `ref` in `hist` (the row itself, or another copy of
    the same event — a union merge's duplicate), or 0 if it is not live."""
    refs, start = hist.refs, hist.start
    for i in range(len(refs) - 1, start - 1, -1):  # mostly found among the last few
        if refs[i] == ref:
            return i - start + 1
    target = view.idh(ref)
    for i in range(len(refs) - 1, start - 1, -1):
        if view.idh(refs[i]) == target:
            return i - start + 1
    return 0


def _build(
    built: dict[int, Event], i: int, event: Any, snapshot_id: str | None, seq: int, ts: int
) -> bytes:
    """The line of job `i`, once the log gave it a seq and a ts."""
    ev = built[i] = event(id=snapshot_id or uuid7(ts), seq=seq, ts=ms_to_ts(ts))
    return encode(ev)


def _entries(view: UserView, hist: Any, start: int, versions: range) -> list[HistoryEntry]:
    """History entries of `versions` (numbered from the live `start`), read from the logs."""
    records = view.read_records([hist.refs[start + n - 1] for n in versions])
    return [
        HistoryEntry(n, r["id"], r["data"].get("event", ""), r["ts"], counts(r["data"]))
        for n, r in zip(versions, records, strict=True)
    ]


def _ref_at(view: UserView, path: str, offset: int) -> int | None:
    """The ref of the row folded from `offset` of the file at `path`, if folded."""
    with view.lock:
        part = view.parts.get(os.path.basename(path))
        if part is None:
            return None
        for row in range(len(part.off) - 1, -1, -1):
            if part.off[row] == offset:
                return part.no << 32 | row
            if part.off[row] < offset:
                break
    return None


def _snapshot(ev: Event, version: int) -> Snapshot:
    return Snapshot(
        session_id=ev.session_id,
        version=version,
        snapshot_id=ev.id,
        event=ev.data.get("event", ""),
        created_at=ev.ts,
        session_data=ev.data,
    )


def _no_session(session_id: str, user: str) -> NotFound:
    return NotFound(f"No session {session_id!r} for user {user!r}.", what="session")


def _check_filters(filters: Filters) -> Filters:
    if filters.event is not None and filters.event not in SNAPSHOT_EVENTS:
        raise InvalidInput(
            FieldError(
                "event", f"must be one of {', '.join(SNAPSHOT_EVENTS)}; got {filters.event!r}."
            )
        )
    return filters


MAX_VERSION_DIGITS = 18  # any version a log can hold; a longer number is refused unparsed


def check_version(value: Any, name: str = "version") -> int:
    """A version number: an int from 1, or a string of ASCII digits (no sign, no '²')."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > MAX_VERSION_DIGITS:
            raise InvalidInput(
                FieldError(name, f"must be a whole number from 1 (got {len(value)} digits).")
            )
        value = int(value)
    if type(value) is not int or value < 1:
        raise InvalidInput(FieldError(name, "must be a whole number from 1."))
    return value


def check_snapshot_id(value: Any, name: str = "snapshot_id") -> str:
    sid = normalize_uuid(value) if isinstance(value, str) else None
    if sid is None:
        raise InvalidInput(FieldError(name, "must be a snapshot id (a UUID)."))
    return sid


def _check_limit(limit: int) -> int:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(FieldError("limit", f"must be an integer from 1 to {MAX_LIMIT}."))
    return limit


def _cursor_value_ok(kind: str, value: Any) -> bool:
    """A version (from 1) for "v", a session head's key (ts, writer, seq, id hash) for "s"."""
    if kind == "v":
        return type(value) is int and value >= 1
    return (
        type(value) is list
        and len(value) == 4
        and type(value[0]) is int
        and type(value[1]) is str
        and type(value[2]) is int
        and type(value[3]) is int
    )


def _encode_cursor(kind: str, value: Any) -> str:
    import base64

    raw = dumps([kind, list(value) if isinstance(value, tuple) else value])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None, kind: str) -> Any:
    if cursor is None:
        return None
    import base64

    try:
        got, value = loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if got != kind or not _cursor_value_ok(kind, value):
            raise ValueError(got)
        return value
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise InvalidInput(
            FieldError("cursor", "is not a cursor this listing gave out; omit it to start over.")
        ) from None
