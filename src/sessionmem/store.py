"""`Store(root)`: the one implementation every surface calls (docs/http.md and README) — the
library's vocabulary over its parts: the views (`views`), the write engine (`write`), the
answers kept ready to send (`answers`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .answers import HISTORY_CACHE_ENTRIES, Answers, entries_of, snapshot_of
from .changes import Changes
from .codec import id_hash
from .config import store_settings
from .errors import NotFound
from .forget import Forgotten, forget_session, forget_text, prune, purge
from .layout import Layout, check_user
from .memory import EngineReads
from .model import (
    Filters,
    Page,
    Problem,
    SessionSummary,
    Snapshot,
)
from .pages import check_filters, check_get, decode_cursor, encode_cursor, no_session
from .projection import UserView
from .rules import (
    check_limit,
    check_session_id,
)
from .views import Views
from .write import Writer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .keys import KeyRing
    from .model import FilterArgs, SearchArgs, SessionsArgs
    from .search import SearchIndex
    from .watch import Follower


class Store(EngineReads):
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
        self.changes = Changes()
        settings = store_settings(self.root, durability=durability, cache=cache)
        self.durability, self.cache = settings.durability, settings.cache
        self._views = Views(self.layout, cache=self.cache)
        self._indexes: dict[str, SearchIndex] = {}
        self._keys: KeyRing | None = None
        self._answers = Answers()
        self._writer = Writer(
            self.layout,
            self._views,
            self._answers,
            durable=self.durability == "durable",
            redactor=redactor if callable(redactor) else None,
            redact_section=settings.redact if redactor == "config" else None,
        )

    @property
    def writer(self) -> str:
        """This clone's writer id (the name of its log file in each user's folder)."""
        return self._writer.writer

    @property
    def _appender(self) -> Any:  # read by tests (the fsyncs a batch shared)
        return self._writer.appender

    def view(self, user: str, *, force: bool = False) -> UserView:
        """The user's projection, brought up to date with the files on disk."""
        return self._views.fresh(user, force=force)

    def save_cache(self) -> None:
        """Write the projection cache of every user folded since it was last written."""
        self._views.save_all()

    def close(self) -> None:
        """Save the projection cache, release the lock files and the sync thread this store
        holds (it stays usable)."""
        self.save_cache()
        self._writer.close()

    def secret(self, name: str) -> bytes:
        """A random secret kept with this memory, made on first use (the web page signs its
        cookies with one)."""
        return self.layout.secret(name)

    def users(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.layout.log) if e.is_dir())
        except FileNotFoundError:
            return []

    def problems(self, user: str | None = None) -> list[Problem]:
        users = [user] if user else self.users()
        return [p for u in users for p in self.view(u).problems()]

    # --- writing -------------------------------------------------------------------------

    def keys(self) -> KeyRing:
        """The API keys of this memory folder (their hashes, under `.local/`)."""
        # lazy: .keys costs 7 ms at start-up
        from .keys import KeyRing

        if self._keys is None:
            self._keys = KeyRing(self.layout)
        return self._keys

    def follower(self) -> Follower:
        """A watcher that folds other processes' appends and git's file replacements as they
        happen (`start()`, `stop()`)."""
        # lazy: .watch costs 3 ms at start-up
        from .watch import Follower

        return Follower(self)

    def save(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Snapshot:
        """Store a full snapshot of a session (it replaces, it does not merge).

        `body` has the fields of `POST /session`. With `idempotency_key` (or a `snapshot_id` in
        the body) a retry returns the first result instead of storing a duplicate; the same key
        with a different body raises Conflict. `snapshot.json()` is the HTTP API's answer.
        """
        snap = self._writer.write(self._writer.job(user, body, idempotency_key))
        assert snap is not None  # only deletes answer none
        self._purge_if_needed(user)
        return snap

    append = save  # the library's first name for it; `save` is every surface's word

    async def save_async(
        self, user: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Snapshot:
        """`save` for an asyncio server. Saves submitted on one event loop during one turn of
        it are written together — one lock, one `write` of all their lines — on the loop
        itself (no thread convoy around the writer lock), and their fsync is awaited from a
        thread that syncs concurrent batches together. Answers only once it is durable."""
        snap = await self._writer.write_async(self._writer.job(user, body, idempotency_key))
        assert snap is not None
        self._purge_if_needed(user)  # (rare, and brief: on the loop)
        return snap

    append_async = save_async

    def delete(self, user: str, session_id: str) -> int:
        """Hide a session from every read by appending a tombstone. Returns how many versions
        it hid. Posting to the same id afterwards starts a new history at version 1."""
        job = self._writer.delete_job(user, session_id)
        hist = self.view(user).history(session_id)
        if hist is None or hist.deleted:
            raise no_session(session_id, user)
        hidden = len(hist.refs) - hist.start
        self._writer.write(job)
        return hidden

    def forget(self, user: str, session_id: str) -> Forgotten:
        """Erase every event of a session from this clone's log files and everything derived
        (unlike `delete`, which hides it): see `forget.forget_session`."""
        return forget_session(self, user, session_id)

    def forget_text(self, text: str) -> Forgotten:
        """Replace `text` with [REDACTED] in every stored event here (`forget.forget_text`)."""
        return forget_text(self, text)

    def prune(
        self, user: str, *, keep_versions: int | None = None, older_than_ms: int | None = None
    ) -> Forgotten:
        """Erase each session's older snapshots; the newest is always kept (`forget.prune`)."""
        return prune(self, user, keep_versions=keep_versions, older_than_ms=older_than_ms)

    def _purge_if_needed(self, user: str) -> None:
        """After a write: lines that erase records hide but the files still hold (a merge
        brought them back; a forget was killed) are taken out (docs/storage.md, "Erasure")."""
        if self._views.get(user).state.hidden():
            purge(self, user)

    # --- reading -------------------------------------------------------------------------

    def saves_per_day(self, user: str, since_ms: int) -> dict[int, int]:
        """Snapshots stored per UTC day (days since 1970) from `since_ms` on (the web page's
        chart)."""
        return self._views.read(check_user(user), lambda view: view.saves_per_day(since_ms))

    def latest(self, user: str, **filters: Unpack[FilterArgs]) -> Snapshot:
        """The user's most recent snapshot over all sessions, optionally filtered (by
        project_path, git_branch, event, agent)."""
        checked = check_filters(Filters(**filters))

        def run(view: UserView) -> Snapshot:
            if not checked.any():
                head = view.latest_head()
                if head is not None:
                    return self._answers.render(view, view.state.session_names[head[0]], head[1])
            else:
                for _key, sidx, ref in view.live_heads():
                    summary = view.summary(sidx, ref)
                    if checked.match(summary.fields):
                        return self._answers.render(view, summary.session_id, ref)
            if checked.any():
                raise NotFound("No snapshot matches these filters.", what="filters")
            raise NotFound(f"No snapshot stored yet for user {user!r}.", what="snapshot")

        return self._views.read(check_user(user), run)

    def get(
        self,
        user: str,
        session_id: str,
        *,
        version: int | str | None = None,
        snapshot_id: str | None = None,
    ) -> Snapshot:
        """A session's latest snapshot, or the one at `version` / with `snapshot_id` (replay)."""
        version, snapshot_id = check_get(user, session_id, version, snapshot_id)

        def run(view: UserView) -> Snapshot:
            hist = view.history(session_id)
            if hist is None or hist.deleted:
                raise no_session(session_id, user)
            total = len(hist.refs) - hist.start
            if snapshot_id is not None:
                target = id_hash(snapshot_id)
                for i in range(len(hist.refs) - 1, hist.start - 1, -1):
                    ref = hist.refs[i]
                    if view.state.idh(ref) == target and view.read(ref).id == snapshot_id:
                        return self._answers.render(view, session_id, ref)
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
                return self._answers.render(view, session_id, ref)
            return snapshot_of(view.read(ref), n)

        return self._views.read(user, run)

    def history(
        self, user: str, session_id: str, *, limit: int | str = 50, cursor: str | None = None
    ) -> Page:
        """A session's snapshots, newest first, `limit` at a time; pass back `next_cursor`."""
        check_session_id(session_id)
        limit = check_limit(limit)
        below = decode_cursor(cursor, "v")

        def run(view: UserView) -> Page:
            hist = view.history(session_id)
            if hist is None or hist.deleted:
                raise no_session(session_id, user)
            start = hist.start
            total = len(hist.refs) - start
            top = total if below is None else max(min(below - 1, total), 0)
            low = max(top - limit, 0)
            if total <= HISTORY_CACHE_ENTRIES // 2:
                items = self._answers.history_entries(view, session_id, hist, start)
                items = items[low:top][::-1]
            else:  # too long to keep: read just this page
                items = entries_of(view, hist, start, range(top, low, -1))
            nxt = items[-1].version if items and items[-1].version > 1 else None
            return Page(items, encode_cursor("v", nxt) if nxt else None)

        return self._views.read(user, run)

    def search(
        self,
        user: str,
        q: str,
        *,
        cancel: threading.Event | None = None,
        **args: Unpack[SearchArgs],
    ) -> Page:
        """Snapshots whose tasks, decisions, files or commands match `q` (words, "phrases",
        `prefix*`, `task:` / `decision:` / `file:` / `command:` scopes), best first, then newest:
        each hit's session, version, field and a snippet with the matches in [brackets]. The
        newest version of each session unless `all_versions`; deleted sessions never. A search
        takes at most SESSIONMEM_SEARCH_BUDGET seconds (5; past it, InvalidInput naming `q`)
        and stops when `cancel` is set. Filters (`model.SearchArgs`): project_path, git_branch,
        event, agent, session_id, since, until, all_versions; `limit` (20), `cursor`."""
        # lazy: .search costs 5 ms at start-up
        from .search import check_time, find, fts_query, until_end

        unknown = set(args) - _SEARCH_ARGS
        if unknown:
            raise TypeError(f"search() got an unexpected keyword argument {min(unknown)!r}")
        project_path, git_branch = args.get("project_path"), args.get("git_branch")
        event, agent, session_id = args.get("event"), args.get("agent"), args.get("session_id")
        since, until, cursor = args.get("since"), args.get("until"), args.get("cursor")
        all_versions = bool(args.get("all_versions"))
        check_user(user)
        expression = fts_query(q)
        check_filters(Filters(event=event))
        if session_id is not None:
            check_session_id(session_id)
        check_time("since", since)
        check_time("until", until)
        limit = check_limit(args.get("limit", 20))
        start = decode_cursor(cursor, "q") or 0
        where = {
            "project": project_path,
            "branch": git_branch,
            "event": event,
            "agent": agent,
            "session": session_id,
            "since": since,
            "until": until and until_end(until),
        }
        index = self._search_index(user)

        def run(view: UserView) -> Page:
            items, last = find(
                view, index, expression, where, all_versions, limit, start, cancel=cancel
            )
            return Page(items, encode_cursor("q", last) if last else None)

        return self._views.read(user, run)

    def _search_index(self, user: str) -> SearchIndex:
        # lazy: .search costs 5 ms at start-up
        from .search import SearchIndex

        index = self._indexes.get(user)
        if index is None:
            index = self._indexes.setdefault(
                user, SearchIndex(self.root / ".local" / "search" / f"{user}.sqlite")
            )
        return index

    def sessions(self, user: str, **args: Unpack[SessionsArgs]) -> Page:
        """The user's sessions, newest first, each with its latest snapshot's summary
        (filtered by project_path, git_branch, event, agent; `limit` 50 a page, `cursor`)."""
        unknown = set(args) - _SESSIONS_ARGS
        if unknown:
            raise TypeError(f"sessions() got an unexpected keyword argument {min(unknown)!r}")
        limit = check_limit(args.get("limit", 50))
        before = decode_cursor(args.get("cursor"), "s")
        filters = check_filters(
            Filters(args.get("project_path"), args.get("git_branch"), args.get("event"),
                    args.get("agent"))
        )  # fmt: skip

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
                    nxt = encode_cursor("s", last_key)
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

        return self._views.read(user, run)


_SESSIONS_ARGS = {"project_path", "git_branch", "event", "agent", "limit", "cursor"}
_SEARCH_ARGS = _SESSIONS_ARGS | {"session_id", "since", "until", "all_versions"}
