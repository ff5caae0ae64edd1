"""Reading a transcript from where the last hook stopped (docs/decisions.md, "What the hooks
capture"): the reader's state, an offset and a fingerprint of the bytes before it are kept in
`.memory/.local/transcripts/`, so a `Stop` hook on a long session reads only the new lines."""

from __future__ import annotations

import errno
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .transcript import STATE_VERSION, Parsed, Reader, open_regular, read_lines

MAX_READ = 64 * 1024 * 1024  # bytes one hook reads of a transcript; the next one goes on


def read_transcript(
    path: str | Path,
    project_root: str | None,
    state_dir: Path,
    reader: type[Reader] | None = None,
    mask: Callable[[str], str] | None = None,
) -> tuple[Parsed, str]:
    """Read a transcript from where the last call stopped (its state kept in `state_dir`):
    (what it says, how it was read — "whole", "from byte N" or "unchanged"). A transcript that
    shrank, was replaced, or changed before the remembered offset is read again whole. Raises
    OSError when the transcript cannot be read. `mask` (the folder's redaction) is applied to
    every string of the state kept on disk, so it holds nothing the log would not."""
    path = str(path)
    cls = reader or Reader
    saved = state_dir / _state_name(path)
    with open_regular(path) as f:
        st = os.fstat(f.fileno())
        kept = _load(saved, path)
        offset = 0
        if (
            kept is not None
            and kept.get("ino") == st.st_ino
            and kept["offset"] <= st.st_size
            and _fingerprint(f, kept["offset"]) == kept["fingerprint"]
        ):
            offset = kept["offset"]
        f.seek(offset)
        data = f.read(MAX_READ + 1)
    cut = len(data) > MAX_READ
    if cut:  # the rest is read by the next hooks, from where this one stops
        data = data[:MAX_READ]
        if cls.document(data):
            raise OSError(errno.EFBIG, f"a single JSON document over {MAX_READ >> 20} MiB")
    if cls.document(data):  # one JSON document, rewritten whole each time: no offset
        r = cls(project_root)
        read_lines(r, data)
        kept_saved = kept.get("saved") if kept else None
        _store(saved, {"path": path, "ino": -1, "offset": 0, "fingerprint": [], "saved": kept_saved,
                       "state": _mask(r.state(), mask)})  # fmt: skip
        return r.result(), "whole"
    end = data.rfind(b"\n") + 1  # a line still being written is read next time
    try:
        r = cls(project_root, kept["state"] if offset and kept else None)
        read_lines(r, data[:end])
        result = r.result()
    except Exception:  # a kept state this version cannot use: read it all again
        if not offset:
            raise
        return _whole(path, project_root, saved, cls, mask)
    how = "whole" if offset == 0 else ("unchanged" if not end else f"from byte {offset}")
    if cut:
        how += (
            f" up to byte {offset + end} (at most {MAX_READ >> 20} MiB a hook: the next reads on)"
        )
    with open_regular(path) as f:
        fingerprint = _fingerprint(f, offset + end)  # (of the bytes read, as they are now)
    _store(
        saved,
        {
            "path": path,
            "ino": st.st_ino,
            "offset": offset + end,
            "fingerprint": fingerprint,
            "state": _mask(r.state(), mask),
            # (a digest of what was last saved holds whatever way the transcript was read)
            "saved": kept.get("saved") if kept else None,
        },
    )
    return result, how


def digest(parsed: Parsed) -> str:
    """The work a snapshot would take from `parsed` — not how many lines it took to say it, nor
    the user's latest words and turn counts, which alone never make a new snapshot (a `Stop`
    after a turn of plain conversation then stops here, before the store is even loaded)."""
    work = parsed._replace(lines=0, skipped=0, requests=[], title=None, stated={})
    return _hash(json.dumps(work, separators=(",", ":")).encode())


def _hash(data: bytes) -> str:
    """A 64-bit fingerprint and the length (zlib's: hashlib costs a Stop hook ~2 ms to load)."""
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):x}"


def mark_saved(path: str | Path, state_dir: Path, parsed: Parsed) -> None:
    """Remember that a snapshot of `parsed` was stored: a later `Stop` that finds nothing new
    stores nothing (`saved_digest`)."""
    saved = state_dir / _state_name(str(path))
    kept = _load(saved, str(path))
    if kept is not None:
        kept["saved"] = digest(parsed)
        _store(saved, kept)


def saved_digest(path: str | Path, state_dir: Path) -> str | None:
    kept = _load(state_dir / _state_name(str(path)), str(path))
    return kept.get("saved") if kept is not None else None


def _state_name(path: str) -> str:
    return _hash(path.encode()) + ".json"  # (the file names its path: a collision is ignored)


def _whole(
    path: str,
    project_root: str | None,
    saved: Path,
    cls: type[Reader],
    mask: Callable[[str], str] | None,
) -> tuple[Parsed, str]:
    saved.unlink(missing_ok=True)
    parsed, _ = read_transcript(path, project_root, saved.parent, cls, mask)
    return parsed, "whole"


def _fingerprint(f: Any, offset: int) -> list[int]:
    """CRC-32 of the first and of the last 4 KiB before `offset`: an edit before the offset
    (a rewritten or replaced transcript) is seen without reading it all."""
    f.seek(0)
    head = f.read(min(offset, 4096))
    start = max(0, offset - 4096)
    f.seek(start)
    tail = f.read(offset - start)
    return [offset, zlib.crc32(head), zlib.crc32(tail)]


def _load(path: Path, transcript: str) -> dict[str, Any] | None:
    try:
        kept = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if (
        not isinstance(kept, dict)
        or not isinstance(kept.get("state"), dict)
        or kept["state"].get("v") != STATE_VERSION
        or not isinstance(kept.get("offset"), int)
        or kept.get("path") != transcript
    ):
        return None
    return kept


def _mask(state: dict[str, Any], mask: Callable[[str], str] | None) -> dict[str, Any]:
    if mask is None:
        return state
    # lazy: .record costs 1.2 ms at start-up
    from .record import masked

    out: dict[str, Any] = masked(state, mask)
    return out


def _store(path: Path, value: dict[str, Any]) -> None:
    """Atomically: two hooks of one session may run at once, and either state is whole."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(value, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:
        pass  # only ever an optimisation: the next call reads the whole transcript
