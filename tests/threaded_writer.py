"""A process appending durably from many threads (group commit), or from many tasks on one
event loop (`async`: batched appends), printing each acknowledged snapshot id — the crash tests
kill it with SIGKILL at a random moment."""

from __future__ import annotations

import asyncio
import sys
import threading

from sessionmem import Store


def main() -> None:
    root, workers, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""
    store = Store(root, durability="durable")
    if mode == "async":
        asyncio.run(on_a_loop(store, workers))
        return
    out = threading.Lock()

    def work(k: int) -> None:
        for i in range(100_000):
            snap = store.append("u", {"session_id": f"t{k}", "open_tasks": [f"{k}-{i}"]})
            with out:
                sys.stdout.write(f"{snap.snapshot_id}\n")
                sys.stdout.flush()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


async def on_a_loop(store: Store, tasks: int) -> None:
    async def work(k: int) -> None:
        for i in range(100_000):
            body = {"session_id": f"a{k % 3}", "open_tasks": [f"{k}-{i}"]}
            snap = await store.append_async("u", body)
            sys.stdout.write(f"{snap.snapshot_id}\n")
            sys.stdout.flush()

    await asyncio.gather(*(work(k) for k in range(tasks)))


if __name__ == "__main__":
    main()
