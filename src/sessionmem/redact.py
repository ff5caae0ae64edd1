"""Credentials never reach the log: before a snapshot is stored, every string in it is
scanned and values that look like credentials are replaced by `[REDACTED]`.

It lives in the library (`Store.append`), so every surface — HTTP, CLI, hooks — is covered.
Configured in `.memory/config.toml`:

```toml
[redact]
enabled = true                      # false turns it off
patterns = ["ACME-[0-9]{8}"]        # extra regular expressions; the whole match is replaced
```

Extra patterns run on RE2 (`google-re2`), whose matching time is linear in the text whatever the
pattern: `config.toml` is committed, so a pattern can arrive with a merge, and a backtracking
engine let `(a+)+$` stall every save and the server's event loop. RE2 has no backreferences and
no lookarounds; a pattern it cannot run is refused when the settings are read, with one line
naming it.

The rules aim at the shapes real credentials have (provider prefixes, assignments to names like
`password`, `Authorization:` headers, private-key blocks, passwords inside URLs) and leave alone
what merely mentions them (`max_tokens=100`, `password: str`, `$TOKEN`, `<your-key>`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from .errors import FieldError, InvalidInput

MASK = "[REDACTED]"

# Provider token shapes: replaced whole.
_TOKENS = [
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
    r"\bASIA[0-9A-Z]{16}\b",  # AWS temporary access key id
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{22,}\b",
    r"\bglpat-[A-Za-z0-9_-]{20,}\b",  # GitLab
    r"\bsk-ant-[A-Za-z0-9_-]{20,}",  # Anthropic
    r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",  # OpenAI
    r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}\b",  # Stripe
    r"\bxox[baprse]-[A-Za-z0-9-]{10,}",  # Slack
    r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
    r"\bnpm_[A-Za-z0-9]{36}\b",  # npm
    r"\bpypi-[A-Za-z0-9_-]{50,}",  # PyPI
    r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
    r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",  # SendGrid
    r"\bsmk_[A-Za-z0-9_-]{43}",  # our own API keys
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
]
_PRIVATE_KEY = (
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*\Z)"
)
# `Authorization: Bearer abc`, `-H "Authorization: token abc"`: keep the header name.
_AUTH_HEADER = (
    r"(?i)\b((?:proxy-)?authorization\s*:\s*)(?:(?:bearer|basic|token|digest)\s+)?[^\s'\"]+"
)
_API_KEY_HEADER = r"(?i)\b((?:x-api-key|x-auth-token|api-key)\s*:\s*)[^\s'\"]{6,}"
# scheme://user:password@host — keep the user, hide the password.
_URL_CREDENTIALS = r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^/\s@]+)(@)"
_SECRET_NAMES = (
    r"(?:[A-Za-z0-9_]*?_)?(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|"
    r"access[_-]?key|private[_-]?key|client[_-]?secret|auth[_-]?token|credentials?|"
    r"(?:secret|signing|encryption|master)[_-]?key)"
)
# NAME=value / NAME = "value" / --name value / --name=value
_ASSIGNMENT = (
    rf"(?i)(?<![A-Za-z0-9])({_SECRET_NAMES}[\"']?\s*(?:=|:=)\s*)([\"']?)([^\s\"'`,;)]+)(\2)"
)
_COLON_ASSIGNMENT = rf"(?i)(?<![A-Za-z0-9])({_SECRET_NAMES}[\"']?\s*:\s*)([\"'])([^\"'\n]+)(\2)"
_FLAG = (
    r"(?i)(--(?:password|passwd|token|secret|api-key|apikey|access-key|client-secret)(?:=|\s+))"
    r"([\"']?)([^\s\"']+)(\2)"
)
# `aws configure set aws_secret_access_key VALUE`: a secret's name, a space, a long random value.
_SPACED = (
    rf"(?i)(?<![A-Za-z0-9])({_SECRET_NAMES}\s+)()((?=[A-Za-z/+=_-]*[0-9])(?=[0-9/+=_-]*[A-Za-z])"
    r"[A-Za-z0-9/+=_-]{20,})()"
)
_PLACEHOLDER = (
    r"(?i)^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|<[^>]*>|\*+|x+|\.\.\.|…|none|null|nil|true|false|"
    r"changeme|redacted|\[redacted\]|os\.environ.*|getenv.*|env\..*|process\.env.*|"
    r"[A-Za-z_][A-Za-z0-9_.]*\(.*|\{\{.*\}\}|\d{1,3})$"
)


def _keep_placeholders(match: re.Match[str]) -> str:
    prefix, quote, value, end = match.group(1), match.group(2), match.group(3), match.group(4)
    if _rules()["placeholder"].match(value) or len(value) < 4:
        return match.group(0)
    return f"{prefix}{quote}{MASK}{end}"


# Every rule above needs one of these (lowercased) somewhere in the text; most text has none,
# and a few substring tests are much cheaper than every rule.
_TRIGGERS = (
    "akia", "asia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "sk-", "k_",
    "xox", "aiza", "npm_", "pypi-", "hf_", "sg.", "smk_", "eyj", "private key", "authoriz",
    "api_key", "api-key", "apikey", "x-auth", "://", "pass", "pwd", "secret", "token",
    "access", "private", "signing", "encryption", "master", "credential",
)  # fmt: skip


def _alternation(words: list[str]) -> str:
    """A regex matching any of `words`, as a trie (shared prefixes tried once: much faster
    than a flat alternation, which tries every word at every position)."""
    if not words:
        return ""
    groups: dict[str, list[str]] = {}
    for word in words:
        if word:
            groups.setdefault(word[0], []).append(word[1:])
    alts = [re.escape(c) + _alternation(rest) for c, rest in sorted(groups.items())]
    body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    return f"(?:{body})?" if "" in words else body


_SCREEN = re.compile(_alternation(sorted(set(_TRIGGERS))))


@functools.cache
def _rules() -> dict[str, re.Pattern[str]]:
    """The rules, compiled the first time a string gets past the screen: a process that saves
    one clean snapshot (the CLI, a hook) never pays for compiling them (~8 ms)."""
    return {
        "whole": re.compile("|".join([*_TOKENS, _PRIVATE_KEY])),
        "auth": re.compile(_AUTH_HEADER),
        "api_key": re.compile(_API_KEY_HEADER),
        "url": re.compile(_URL_CREDENTIALS),
        "assignment": re.compile(_ASSIGNMENT),
        "colon": re.compile(_COLON_ASSIGNMENT),
        "flag": re.compile(_FLAG),
        "spaced": re.compile(_SPACED),
        "placeholder": re.compile(_PLACEHOLDER),
    }


_CLEAN_MAX = 16_384  # strings remembered as clean (snapshots of a session repeat most of theirs)
_CLEAN_CHARS = 1_024  # longer strings are screened every time


class Redactor:
    def __init__(self, extra: list[str] | None = None):
        self._extra = [_linear(p) for p in extra or []]
        self._clean: set[str] = set()

    def text(self, value: str) -> str:
        if not value:
            return value
        if not self._extra and not _SCREEN.search(value.lower()):
            return value
        rules = _rules()
        out = rules["whole"].sub(MASK, value)
        out = rules["auth"].sub(lambda m: m.group(1) + MASK, out)
        out = rules["api_key"].sub(lambda m: m.group(1) + MASK, out)
        out = rules["url"].sub(lambda m: m.group(1) + MASK + m.group(3), out)
        out = rules["assignment"].sub(_keep_placeholders, out)
        out = rules["colon"].sub(_keep_placeholders, out)
        out = rules["flag"].sub(_keep_placeholders, out)
        out = rules["spaced"].sub(_keep_placeholders, out)
        for pattern in self._extra:
            out = pattern.sub(MASK, out)
        return out

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self._extra and self._all_clean(data):
            return data  # the common case: nothing to do, and no copy
        return {k: self._value(v) for k, v in data.items()}

    def _all_clean(self, data: dict[str, Any]) -> bool:
        """True if no string in `data` (top level, or in its lists) has a trigger."""
        for value in data.values():
            if type(value) is str:
                if not self._is_clean(value):
                    return False
            elif type(value) is list:
                for item in value:
                    if type(item) is not str or not self._is_clean(item):
                        return False
            elif value is not None and type(value) not in (int, float, bool):
                return False  # nested objects (metadata): the full walk
        return True

    def _is_clean(self, value: str) -> bool:
        clean = self._clean
        if value in clean:
            return True
        if _SCREEN.search(value.lower()):
            return False
        if len(value) <= _CLEAN_CHARS:
            if len(clean) >= _CLEAN_MAX:
                clean.clear()
            clean.add(value)
        return True

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        return value


def _linear(pattern: str) -> Any:
    """`pattern` compiled for RE2 (linear time); InvalidInput naming it if RE2 cannot run it."""
    # lazy: re2 costs 2 ms at start-up
    import re2  # only a folder with extra patterns pays for loading it

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise InvalidInput(
            FieldError(
                "config.toml redact.patterns",
                f"has a pattern that cannot be used: {pattern!r} ({reason}). Patterns run in "
                "linear time (RE2 syntax: no backreferences, no lookarounds).",
            )
        ) from None


def redactor_from_config(section: Any) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    if not isinstance(section, dict):
        raise InvalidInput(FieldError("config.toml [redact]", "must be a table."))
    if section.get("enabled", True) is False:
        return None
    patterns = section.get("patterns", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise InvalidInput(FieldError("config.toml redact.patterns", "must be a list of strings."))
    return Redactor(patterns)
