"""Per-folder settings in `.memory/config.toml` (committed, shared by the team).

```toml
durability = "durable"        # or "fast"; SESSIONMEM_DURABILITY overrides it

[redact]
enabled = true                # replace credential-looking values by [REDACTED] before storing
patterns = ["ACME-[0-9]{8}"]  # extra regular expressions
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    import tomllib  # only when there is a file to read: most folders have none

    try:
        return tomllib.loads(raw.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(FieldError("config.toml", f"is not valid TOML ({exc}).")) from None
