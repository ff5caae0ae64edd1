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
import tomllib
from pathlib import Path
from typing import Any

from .errors import FieldError, InvalidInput
from .store import Store


def read_config(root: Path | str) -> dict[str, Any]:
    path = Path(root) / "config.toml"
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(FieldError("config.toml", f"is not valid TOML ({exc}).")) from None


def load_store(root: Path | str, *, durability: str | None = None) -> Store:
    """A Store configured from the folder's config.toml (every surface opens it this way)."""
    config = read_config(root)
    durability = durability or os.environ.get("SESSIONMEM_DURABILITY") or config.get("durability")
    redactor = None
    try:
        from .redact import redactor_from_config
    except ImportError:  # pragma: no cover - redact lands with issue 5
        pass
    else:
        redactor = redactor_from_config(config.get("redact", {}))
    return Store(root, durability=durability, redactor=redactor)
