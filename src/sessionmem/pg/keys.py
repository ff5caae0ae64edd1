"""API keys in the database (the `api_keys` table): the same keys, ids and answers as the memory
folder's `keys.KeyRing`, shared by every replica at once. Only SHA-256 hashes are stored."""

from __future__ import annotations

import builtins
import hmac
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ..errors import NotFound
from ..keys import KEY_PREFIX, KeyInfo, hash_key, new_key


class PgKeys:
    def __init__(self, connect: Callable[[], AbstractContextManager[Any]]):
        self._connect = connect

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
        return [KeyInfo(rows[0][0][:12], rows[0][1], rows[0][2])]

    def authenticate(self, key: str | None) -> str | None:
        if not key:
            return None
        digest = hash_key(key)
        with self._connect() as conn:
            row = conn.execute(
                "SELECT sha256, user_id FROM api_keys WHERE sha256 = %s", (digest,)
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0].encode(), digest.encode()):
            return None
        return str(row[1])
