"""Each user's projection (`UserView`), made on first use from its cache file when there is one,
brought up to date with the files before a read, and written back to the cache now and then."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from . import cache
from .errors import Stale
from .layout import Layout, check_user
from .lru import ByteLRU
from .projection import SUMMARY_BYTES, UserView

T = TypeVar("T")
CACHE_MIN_ROWS = 10_000  # fold at least this much before writing the cache again


class Views:
    def __init__(self, layout: Layout, *, cache: bool):
        self.layout = layout
        self.cache = cache
        self._views: dict[str, UserView] = {}
        self._lock = threading.Lock()
        # The heads' summaries for filtered listings: one byte budget for every user.

        self._summaries = ByteLRU(SUMMARY_BYTES)

    def get(self, user: str) -> UserView:
        """The user's projection as folded so far (a write folds its own lines into it)."""
        view = self._views.get(user)
        if view is None:
            check_user(user)
            with self._lock:
                view = self._views.get(user)
                if view is None:
                    view = UserView(self.layout.log / user, user)
                    view.summaries = self._summaries
                    path = cache.cache_path(self.layout.root, user)
                    if self.cache and cache.load(view.state, path):
                        view.state.saved_rows = view.state.loaded_rows
                        view.state.saved_generation = view.state.generation
                    self._views[user] = view
        return view

    def fresh(self, user: str, *, force: bool = False) -> UserView:
        """The user's projection, brought up to date with the files on disk."""
        view = self.get(user)
        if view.refresh(force=force) and self.cache:
            self._maybe_save(view)
        return view

    def read(self, user: str, fn: Callable[[UserView], T]) -> T:
        """Run a read; if a file changed under it (git checkout), fold that file again and run
        it again — after two misses, fold everything again. Stale (HTTP 503) only reaches the
        caller when the files keep changing through every try."""
        for attempt in range(6):
            view = self.fresh(user)
            try:
                return fn(view)
            except Stale as exc:
                if attempt < 2:
                    view.invalidate(exc.part)
                else:
                    view.reset()
        return fn(self.fresh(user))

    def save_all(self) -> None:
        """Write the projection cache of every user folded since it was last written."""
        if self.cache:
            for view in list(self._views.values()):
                self._maybe_save(view, always=True)

    def _maybe_save(self, view: UserView, *, always: bool = False) -> None:
        """Write the projection cache when much was folded since it was last written."""
        state, rows = view.state, view.event_count()
        fresh = rows - state.saved_rows
        # After a file was dropped and folded again the count may match while the rows do not.
        changed = state.generation != state.saved_generation
        if (
            (always and changed)
            or (changed and state.rebuilt)
            or fresh >= max(CACHE_MIN_ROWS, rows // 4)
        ):
            try:
                cache.save(state, cache.cache_path(self.layout.root, state.user))
            except OSError:
                return  # a cache is only ever an optimisation
            state.saved_rows, state.saved_generation, state.rebuilt = rows, state.generation, False
