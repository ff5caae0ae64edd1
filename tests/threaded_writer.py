"""A process appending durably from many threads (group commit), printing each acknowledged
snapshot id — the crash test kills it with SIGKILL at a random moment."""

from __future__ import annotations

import sys
import threading

from sessionmem import Store


def main() -> None:
    root, threads = sys.argv[1], int(sys.argv[2])
    store = Store(root, durability="durable")
    out = threading.Lock()

    def work(k: int) -> None:
        for i in range(100_000):
            snap = store.append("u", {"session_id": f"t{k}", "open_tasks": [f"{k}-{i}"]})
            with out:
                sys.stdout.write(f"{snap.snapshot_id}\n")
                sys.stdout.flush()

    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main()
