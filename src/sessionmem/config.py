"""Per-folder settings in `.memory/config.toml` (committed, shared by the team).

```toml
durability = "durable"        # or "fast"; SESSIONMEM_DURABILITY overrides it

[redact]
enabled = true                # replace credential-looking values by [REDACTED] before storing
patterns = ["ACME-[0-9]{8}"]  # extra regular expressions
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from .errors import FieldError, InvalidInput


def read_config(root: Path | str) -> dict[str, Any]:
    path = Path(root) / "config.toml"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise InvalidInput(FieldError("config.toml", f"cannot be read ({exc.strerror}).")) from None
    # lazy: tomllib costs 4 ms at start-up
    import tomllib  # only when there is a file to read: most folders have none

    try:
        return tomllib.loads(raw.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(FieldError("config.toml", f"is not valid TOML ({exc}).")) from None


class StoreSettings(NamedTuple):
    durability: str  # "durable" or "fast"
    cache: bool  # keep the projection cache in .local/cache/
    redact: Any  # the [redact] section (checked when the redactor is built)


def store_settings(
    root: Path | str, *, durability: str | None = None, cache: bool | None = None
) -> StoreSettings:
    """A Store's settings: what the caller passed, else the environment (SESSIONMEM_DURABILITY,
    SESSIONMEM_CACHE=0), else `config.toml`, else the defaults — read here and nowhere else."""

    # lazy: .rules costs 12 ms at start-up
    from .rules import check_durability

    config = read_config(root)
    durability = (
        durability
        or os.environ.get("SESSIONMEM_DURABILITY")
        or config.get("durability")
        or "durable"
    )
    durability = check_durability(durability)
    if cache is None:
        cache = os.environ.get("SESSIONMEM_CACHE", "1") != "0"
    return StoreSettings(durability, cache, config.get("redact", {}))
