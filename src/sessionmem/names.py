"""The names sessionmem stores — users, sessions, writers — and the one rule for each
(docs/storage.md, "The line format"). Imports nothing heavy: the hooks' fast path uses them."""

from __future__ import annotations

import re

USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")
# (also the JSON Schema pattern of http/schemas.py)
SESSION_CHARS = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"
SESSION_RE = re.compile(SESSION_CHARS + r"\Z")
WRITER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
