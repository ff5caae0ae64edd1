"""API keys (docs/http.md, "API keys"): only SHA-256 hashes are stored, in `.local/keys.json`
(mode 0600).

A key is shown once, when created. Its public id is the first 12 hex digits of its hash, which is
what `keys list` shows and `keys revoke` takes (the key itself works too).

The file is checked whole every time it is read: a damaged one (not JSON, the wrong shape, an
entry without a valid hash or user) is never taken for "no keys" — `keys create`, `keys revoke`
and `serve` stop with an error naming the file and the problem and leave it byte for byte as it
is, and a running server keeps the last good copy it read and logs the problem once.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from .codec import ms_to_ts, now_ms
from .errors import DamagedKeyFile, NotFound, StorageError, storage_error
from .layout import Layout, check_user
from .names import USER_RE

KEY_PREFIX = "smk_"
_SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")
log = logging.getLogger("sessionmem")


class KeyInfo(NamedTuple):
    id: str
    user: str
    created_at: str


def parse_keys(raw: bytes, path: str) -> list[dict[str, str]]:
    """The entries of a keys.json, each checked; DamagedKeyFile naming the problem otherwise."""

    def damaged(problem: str) -> DamagedKeyFile:
        return DamagedKeyFile(
            f"The key file {path} is damaged ({problem}); it was left as it is. Restore it from "
            "a backup, or move it aside and create keys again with `sessionmem keys create USER`."
        )

    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise damaged(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise damaged('not an object with a "keys" list')
    entries = []
    for n, e in enumerate(doc["keys"], 1):
        if not isinstance(e, dict):
            raise damaged(f"entry {n} is not an object")
        if not isinstance(e.get("sha256"), str) or not _SHA256_RE.match(e["sha256"]):
            raise damaged(f"entry {n} has no valid sha256")
        if not isinstance(e.get("user"), str) or not USER_RE.match(e["user"]):
            raise damaged(f"entry {n} has no valid user")
        if not isinstance(e.get("created_at", ""), str):
            raise damaged(f"entry {n} has a created_at that is not a string")
        entries.append({"sha256": e["sha256"], "user": e["user"],
                        "created_at": e.get("created_at", "")})  # fmt: skip
    return entries


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key(user: str) -> tuple[KeyInfo, str, str]:
    """A new key for `user` (on any engine): its info, the key itself (shown once, never stored),
    and the hash that is stored."""
    check_user(user)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hash_key(key)
    return KeyInfo(digest[:12], user, ms_to_ts(now_ms())), key, digest


RECHECK_SECONDS = 0.5  # how stale the server's view of keys.json may be


class KeyRing:
    def __init__(self, layout: Layout):
        self.layout = layout
        self.path = layout.keys
        self._cache: tuple[tuple[int, int, int], list[dict[str, str]]] | None = None
        self._hashes: list[tuple[bytes, str]] = []  # (sha256 hex, user) of the cached entries
        self._checked = -1.0  # when the file was last stat'ed (time.monotonic)
        self._lock = threading.Lock()
        self._reported: tuple[int, int, int] | None = None  # the damaged file logged about

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
        except OSError as exc:
            return self._last_good(fresh, storage_error(f"read {self.path}", exc), None)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._cache is not None and self._cache[0] == stamp:
                self._checked = now
                return self._cache[1]
        try:
            entries = parse_keys(self.path.read_bytes(), str(self.path))
        except DamagedKeyFile as exc:
            return self._last_good(fresh, exc, stamp)
        except OSError as exc:
            return self._last_good(fresh, storage_error(f"read {self.path}", exc), None)
        hashes = [(e["sha256"].encode(), e["user"]) for e in entries]
        with self._lock:
            self._cache, self._hashes, self._checked = (stamp, entries), hashes, now
        return entries

    def _last_good(
        self, fresh: bool, exc: StorageError, stamp: tuple[int, int, int] | None
    ) -> list[dict[str, str]]:
        """A key file that cannot be read: an edit or a listing stops (`fresh`); a running
        server goes on with the keys it read last, and says so once per damaged file."""
        with self._lock:
            cache = self._cache
            self._checked = time.monotonic()
            report = stamp is None or stamp != self._reported
            self._reported = stamp
        if fresh or cache is None:
            raise exc
        if report:
            log.error("%s Keeping the %d keys read before.", exc, len(cache[1]))
        return cache[1]

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[dict[str, str]]]:
        try:
            self.layout.ensure()
            lock = open(self.layout.locks / "keys.lock", "a+b")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise storage_error(f"write the key file {self.path}", exc) from exc
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = list(self._entries())  # a damaged file raises here: never overwritten
            yield entries
            try:
                self._write(entries)
            except OSError as exc:
                raise storage_error(f"write the key file {self.path}", exc) from exc

    def _write(self, entries: list[dict[str, str]]) -> None:
        """Replace the file atomically (temp file, fsync, rename), mode 0600."""
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
        info, key, digest = new_key(user)
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
