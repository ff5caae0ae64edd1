"""Who is looking at the page (docs/web.md, "Signing in"): a signed session cookie, the CSRF token
of every form, and the one-time sign-in links `sessionmem ui` prints.

- The cookie (`sessionmem_ui`) holds the user, the id of the API key that signed in (empty for a
  link), an expiry and a nonce, signed with HMAC-SHA256 under the memory's own secret (`secret`),
  so any server of the same memory — every replica on one database — accepts it. It is HttpOnly,
  SameSite=Strict, Secure over TLS, and lasts `SESSION_SECONDS`; a key revoked since signing in
  ends the session at the next page.
- CSRF: a random `sessionmem_csrf` cookie (HttpOnly, SameSite=Strict); a form carries
  HMAC(secret, that cookie) and a request that changes something must bring it back — in the form
  field `csrf` or the `X-CSRF-Token` header (htmx). The sign-in form is protected the same way.
- A sign-in link holds a random token (never an API key), good once and for `LINK_SECONDS`, kept
  only in the memory of the server that printed it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from typing import NamedTuple

import orjson

COOKIE = "sessionmem_ui"
CSRF_COOKIE = "sessionmem_csrf"
SESSION_SECONDS = 12 * 3600
LINK_SECONDS = 600


class Visitor(NamedTuple):
    user: str
    key_id: str  # the signing-in key's id ("" after a sign-in link)
    nonce: str


class Signer:
    def __init__(self, secret: bytes):
        self._secret = secret

    def _mac(self, purpose: str, payload: bytes) -> str:
        mac = hmac.new(self._secret, purpose.encode() + b"\0" + payload, hashlib.sha256)
        return _b64(mac.digest())

    def session(self, user: str, key_id: str, now: float | None = None) -> str:
        """A cookie value for `user`, valid for SESSION_SECONDS."""
        expires = int((now or time.time()) + SESSION_SECONDS)
        body = orjson.dumps({"u": user, "k": key_id, "e": expires, "n": secrets.token_hex(8)})
        payload = _b64(body)
        return f"{payload}.{self._mac('session', payload.encode())}"

    def visitor(self, cookie: str | None, now: float | None = None) -> Visitor | None:
        """The signed-in visitor of a cookie value, or None (missing, forged, expired)."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
            return None
        payload, mac = cookie.split(".")
        if not _same(mac, self._mac("session", payload.encode("utf-8", "surrogatepass"))):
            return None
        try:
            data = orjson.loads(_unb64(payload))
            user, key_id, expires, nonce = data["u"], data["k"], data["e"], data["n"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(expires, int) or expires < (now or time.time()):
            return None
        if not (isinstance(user, str) and isinstance(key_id, str) and isinstance(nonce, str)):
            return None
        return Visitor(user, key_id, nonce)

    def csrf_token(self, csrf_cookie: str) -> str:
        """The token a form carries for the browser holding `csrf_cookie`."""
        return self._mac("csrf", csrf_cookie.encode())

    def csrf_ok(self, csrf_cookie: str | None, token: str | None) -> bool:
        if not csrf_cookie or not token:
            return False
        return _same(token, self._mac("csrf", csrf_cookie.encode("utf-8", "surrogatepass")))


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)


class Links:
    """One-time sign-in links: token -> (user, expiry), each good once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def make(self, user: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[_digest(token)] = (user, now + LINK_SECONDS)
        return token

    def redeem(self, token: str | None) -> str | None:
        """The user of a valid token, which is then used up; None for any other."""
        if not token or len(token) > 200:
            return None
        with self._lock:
            found = self._tokens.pop(_digest(token), None)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of what a browser sent (any characters) and what we made."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
