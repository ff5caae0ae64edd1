"""API keys in the database (the `api_keys` table): the same keys, ids and answers as the memory
folder's `keys.KeyRing`, shared by every replica at once. Only SHA-256 hashes are stored.

A server asks the database about a key at most once per `RECHECK_SECONDS` (the file engine's rule
for `keys.json`): a key revoked through another replica stops working within that, and at once on
the replicas that hear the revocation's notification (`forget_keys`, called by the follower)."""

from __future__ import annotations

import builtins
import hmac
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ..errors import NotFound
from ..keys import KEY_PREFIX, RECHECK_SECONDS, KeyInfo, hash_key, new_key

CHANNEL = "sessionmem_keys"  # notified when a key is revoked
_REMEMBERED = 10_000  # keys remembered per server (a full memory starts again)


class PgKeys:
    def __init__(self, connect: Callable[[], AbstractContextManager[Any]]):
        self._connect = connect
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, float]] = {}  # digest -> (user, when the database said)

    def forget_keys(self) -> None:
        """Ask the database again about every key (a key was revoked somewhere)."""
        with self._lock:
            self._seen.clear()

    def create(self, user: str) -> tuple[KeyInfo, str]:
        info, key, digest = new_key(user)
        with self._connect() as conn:
            conn.execute("INSERT INTO api_keys VALUES (%s, %s, %s)",
                         (digest, user, info.created_at))  # fmt: skip
        return info, key

    def list(self) -> list[KeyInfo]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT sha256, user_id, created_at FROM api_keys ORDER BY created_at, sha256"
            ).fetchall()
        return [KeyInfo(r[0][:12], r[1], r[2]) for r in rows]

    def revoke(self, key_or_id: str) -> builtins.list[KeyInfo]:
        target = hash_key(key_or_id) if key_or_id.startswith(KEY_PREFIX) else key_or_id.lower()
        if len(target) < 8 or not all(c in "0123456789abcdef" for c in target):
            raise NotFound(f"No key with id {key_or_id!r}. `sessionmem keys list` shows ids.")
        with self._connect() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT sha256, user_id, created_at FROM api_keys WHERE sha256 LIKE %s",
                (target + "%",),
            ).fetchall()
            if len(rows) > 1:
                raise NotFound(f"Key id {key_or_id!r} matches several keys; give more of it.")
            if not rows:
                raise NotFound(f"No key with id {key_or_id!r}. `sessionmem keys list` shows ids.")
            conn.execute("DELETE FROM api_keys WHERE sha256 = %s", (rows[0][0],))
            conn.execute(f"NOTIFY {CHANNEL}")
        self.forget_keys()
        return [KeyInfo(rows[0][0][:12], rows[0][1], rows[0][2])]

    def authenticate(self, key: str | None) -> str | None:
        if not key:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(digest)
        if seen is not None and now - seen[1] < RECHECK_SECONDS:
            return seen[0]
        with self._connect() as conn:
            row = conn.execute(
                "SELECT sha256, user_id FROM api_keys WHERE sha256 = %s", (digest,)
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0].encode(), digest.encode()):
            return None  # (an unknown key is asked about every time: it may be created next)
        with self._lock:
            if len(self._seen) >= _REMEMBERED:
                self._seen.clear()
            self._seen[digest] = (str(row[1]), now)
        return str(row[1])
