from __future__ import annotations

from pathlib import Path

from sessionmem import Store

from contract import StoreContract


class TestDurableStore(StoreContract):
    def make_store(self, root: Path) -> Store:
        return Store(root, durability="durable")


class TestFastStore(StoreContract):
    def make_store(self, root: Path) -> Store:
        return Store(root, durability="fast")
