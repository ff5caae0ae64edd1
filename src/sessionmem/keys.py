"""API keys (SPEC §5): only SHA-256 hashes are stored, in `.local/keys.json` (mode 0600).

A key is shown once, when created. Its public id is the first 12 hex digits of its hash, which is
what `keys list` shows and `keys revoke` takes (the key itself works too).
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from .codec import ms_to_ts, now_ms
from .errors import NotFound
from .layout import Layout, check_user

KEY_PREFIX = "smk_"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    user: str
    created_at: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


RECHECK_SECONDS = 0.5  # how stale the server's view of keys.json may be


class KeyRing:
    def __init__(self, layout: Layout):
        self.layout = layout
        self.path = layout.keys
        self._cache: tuple[tuple[int, int, int], list[dict[str, str]]] | None = None
        self._hashes: list[tuple[bytes, str]] = []  # (sha256 hex, user) of the cached entries
        self._checked = -1.0  # when the file was last stat'ed (time.monotonic)
        self._lock = threading.Lock()

    def _entries(self, *, fresh: bool = True) -> list[dict[str, str]]:
        """The stored keys. With `fresh=False` the file is looked at again only when the last
        look is more than RECHECK_SECONDS old (the server's per-request path)."""
        now = time.monotonic()
        with self._lock:
            if not fresh and self._cache is not None and now - self._checked < RECHECK_SECONDS:
                return self._cache[1]
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            with self._lock:
                self._cache, self._hashes, self._checked = None, [], now
            return []
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._cache is not None and self._cache[0] == stamp:
                self._checked = now
                return self._cache[1]
        try:
            entries = orjson.loads(self.path.read_bytes()).get("keys", [])
        except (OSError, orjson.JSONDecodeError, AttributeError):
            entries = []
        hashes = [
            (e["sha256"].encode(), e["user"])
            for e in entries
            if isinstance(e, dict) and isinstance(e.get("sha256"), str)
        ]
        with self._lock:
            self._cache, self._hashes, self._checked = (stamp, entries), hashes, now
        return entries

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[dict[str, str]]]:
        self.layout.ensure()
        with open(self.layout.locks / "keys.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = list(self._entries())
            yield entries
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps({"keys": entries}, option=orjson.OPT_INDENT_2))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            with self._lock:
                self._checked = -1.0  # this process sees its own change at once

    def create(self, user: str) -> tuple[KeyInfo, str]:
        """Make a new key for `user`. Returns its info and the key, which is never stored."""
        check_user(user)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = hash_key(key)
        info = KeyInfo(digest[:12], user, ms_to_ts(now_ms()))
        with self._editing() as entries:
            entries.append({"sha256": digest, "user": user, "created_at": info.created_at})
        return info, key

    def list(self) -> list[KeyInfo]:
        return [KeyInfo(e["sha256"][:12], e["user"], e["created_at"]) for e in self._entries()]

    def revoke(self, key_or_id: str) -> builtins.list[KeyInfo]:
        """Revoke the key with this id (or the key itself). Returns what was revoked."""
        target = hash_key(key_or_id) if key_or_id.startswith(KEY_PREFIX) else key_or_id.lower()
        removed: list[KeyInfo] = []
        with self._editing() as entries:
            keep = []
            for e in entries:
                if len(target) >= 8 and e["sha256"].startswith(target):
                    removed.append(KeyInfo(e["sha256"][:12], e["user"], e["created_at"]))
                else:
                    keep.append(e)
            if len(removed) > 1:
                raise NotFound(f"Key id {key_or_id!r} matches several keys; give more of it.")
            if not removed:
                raise NotFound(f"No key with id {key_or_id!r}. `sessionmem keys list` shows ids.")
            entries[:] = keep
        return removed

    def authenticate(self, key: str | None) -> str | None:
        """The user a key belongs to, or None. Compares every stored hash in constant time. A
        key created or revoked by another process is seen within RECHECK_SECONDS."""
        if not key:
            return None
        self._entries(fresh=False)
        digest = hash_key(key).encode()
        user = None
        for stored, owner in self._hashes:
            if hmac.compare_digest(digest, stored):
                user = owner
        return user
