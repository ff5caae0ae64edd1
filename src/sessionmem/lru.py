"""A cache bounded in bytes, least recently used out first: what a server keeps besides the
projection must have a size that no snapshot's content can blow up (docs/decisions.md, "Bounds")."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class ByteLRU:
    """`put(key, value, size)` / `get(key)`. An item larger than a quarter of the budget is not
    kept at all (it would push out many small ones for one reuse). Thread-safe."""

    def __init__(self, budget: int):
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= old[1]
            if size > self.budget // 4:
                return
            self._items[key] = (value, size)
            self.size += size
            while self.size > self.budget:
                _, (_, dropped) = self._items.popitem(last=False)
                self.size -= dropped

    def __len__(self) -> int:
        return len(self._items)
