"""A writer process for the concurrency and crash tests: appends N snapshots to a root and prints
each acknowledged snapshot id on its own line (flushed), so a test that kills it knows exactly which
snapshots were acknowledged."""

from __future__ import annotations

import sys

from sessionmem import Store


def main() -> None:
    root, user, session, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = Store(root)
    for i in range(count):
        snap = store.append(user, {"session_id": session, "open_tasks": [f"{session}-{i}"]})
        sys.stdout.write(f"{snap.snapshot_id} {i}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
