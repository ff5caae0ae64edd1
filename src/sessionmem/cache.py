"""The projection cache in `.memory/.local/cache/`: a restart does not replay history.

One file per user: a JSON header followed by the raw bytes of each log file's columns. On load
every file is checked against what the cache says of it: a file whose device, inode, size, mtime
and ctime (in ns; no tool can set a ctime back) are all unchanged is the file that was folded. A
file that changed is folded from the cached offset on only if it grew, still holds the last
folded line whole at the same place, and the CRC-32 of every byte before that offset equals the
one cached; otherwise it is read from scratch, and everything derived from it (heads, idempotency
keys, each writer's newest ts) with it. A cache that is unreadable, from another version, or
whose checksum fails is ignored: the logs are folded in full. The cache can never change an
answer, only its speed (docs/storage.md, "The projection cache").

It is not pickle: a memory folder may come from anyone's repository, and loading it must not run
code.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from array import array
from pathlib import Path
from typing import Any

import orjson

from . import erase
from .filecheck import prefix_crc
from .model import Problem
from .rows import COLUMNS, Part, Rows

MAGIC = b"SMCACHE3\n"
ITEMSIZES = {code: array(code).itemsize for _, code in COLUMNS}


def cache_path(root: Path, user: str) -> Path:
    return root / ".local" / "cache" / f"{user}.bin"


def save(state: Rows, path: Path) -> None:
    """Write a projection's rows to `path` atomically (temp file, then rename)."""
    with state.lock:
        parts = list(state.parts.values())
        index = {p.no: i for i, p in enumerate(parts)}
        blobs: list[bytes] = []
        meta = []
        for p in parts:
            sessions = sorted(p.by_session)
            crc = _crc(p)
            meta.append({
                "name": p.path.name, "dev": p.dev, "ino": p.ino, "consumed": p.consumed,
                "seen_size": p.seen_size, "seen_mtime": p.seen_mtime, "seen_ctime": p.seen_ctime,
                "last_off": p.last_off, "last": base64.b64encode(p.last).decode(),
                "crc": crc, "rows": len(p.ts), "max_ts": p.max_ts,
                "sessions": sessions, "counts": [len(p.by_session[s]) for s in sessions],
                "problems": [[q.offset, q.reason] for q in p.problems],
                "problem_count": p.problem_count, "hidden": p.hidden,
            })  # fmt: skip
            for attr, _ in COLUMNS:
                blobs.append(getattr(p, attr).tobytes())
            for s in sessions:
                blobs.append(p.by_session[s].tobytes())
        header = {
            "user": state.user,
            "itemsizes": ITEMSIZES,
            "erased": state.erased.digest,
            # Only the names of sessions with rows: a forgotten session's stays out.
            "sessions": [n if i in state.heads else "" for i, n in enumerate(state.session_names)],
            "writers": state.writer_names,
            "parts": meta,
            "heads": [[sidx, index[ref >> 32], ref & 0xFFFF_FFFF, kind]
                      for sidx, (_, ref, kind) in state.heads.items() if ref >> 32 in index],
            "idem": [[k, index[r >> 32], r & 0xFFFF_FFFF] for k, r in state.idem.items()
                     if r >> 32 in index],
        }  # fmt: skip
    body = b"".join(blobs)
    head = orjson.dumps(header)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(state)}.tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<QQI", len(head), len(body), zlib.crc32(head + body)))
        f.write(head)
        f.write(body)
    os.replace(tmp, path)


def _crc(part: Part) -> int | None:
    """The CRC-32 of the bytes the part was folded from, or None when the file is no longer
    known to hold them (it changed since the fold: a load then reads it again)."""
    try:
        fd = os.open(part.path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        same = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (
            part.dev, part.ino, part.seen_size, part.seen_mtime, part.seen_ctime
        )  # fmt: skip
        if not same:
            return None
        if 0 <= part.crc_at <= part.consumed and part.crc >= 0:
            crc = prefix_crc(fd, part.consumed, part.crc, part.crc_at)
        else:
            crc = prefix_crc(fd, part.consumed)
        if crc < 0:
            return None
        part.crc, part.crc_at = crc, part.consumed  # the next save reads only what is new
        return crc
    finally:
        os.close(fd)


def load(state: Rows, path: Path) -> bool:
    """Fill empty rows from the cache. Returns False (rows untouched) if unusable."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return False
    try:
        return _load(state, raw)
    except (ValueError, KeyError, TypeError, IndexError, struct.error, OverflowError):
        return False


def _load(state: Rows, raw: bytes) -> bool:
    if not raw.startswith(MAGIC):
        return False
    at = len(MAGIC)
    head_len, body_len, crc = struct.unpack_from("<QQI", raw, at)
    at += struct.calcsize("<QQI")
    if len(raw) != at + head_len + body_len or zlib.crc32(raw[at:]) != crc:
        return False
    header = orjson.loads(raw[at : at + head_len])
    if header["user"] != state.user or header["itemsizes"] != ITEMSIZES:
        return False
    erased = erase.load(erase.folder_of(state.folder))
    if header.get("erased") != erased.digest:
        return False  # folded under other erase records: it may hold what they hide
    body = memoryview(raw)[at + head_len :]
    parts: list[Part] = []
    pos = 0

    def take(code: str, count: int) -> array[Any]:
        nonlocal pos
        size = count * ITEMSIZES[code]
        column = array(code)
        column.frombytes(body[pos : pos + size])
        if len(column) != count:
            raise ValueError("short column")
        pos += size
        return column

    for meta in header["parts"]:
        part = Part(0, state.folder / meta["name"])
        part.dev, part.ino = meta["dev"], meta["ino"]
        part.consumed = meta["consumed"]
        part.seen_size, part.seen_mtime = meta["seen_size"], meta["seen_mtime"]
        part.seen_ctime = meta["seen_ctime"]
        part.last_off, part.last = meta["last_off"], base64.b64decode(meta["last"])
        part.max_ts = {str(k): int(v) for k, v in meta["max_ts"].items()}
        if meta["crc"] is None:
            part.seen_size = part.seen_mtime = part.seen_ctime = -2  # never "unchanged"
            part.crc = -1  # no CRC is -1: the first change reads the file again
        else:
            part.crc, part.crc_at = int(meta["crc"]), part.consumed
        part.unverified = True
        for attr, code in COLUMNS:
            setattr(part, attr, take(code, meta["rows"]))
        for sidx, count in zip(meta["sessions"], meta["counts"], strict=True):
            part.by_session[sidx] = take("i", count)

        part.problems = [Problem(str(part.path), off, reason) for off, reason in meta["problems"]]
        part.problem_count = meta["problem_count"]
        part.hidden = meta.get("hidden", 0)
        parts.append(part)
    if pos != len(body):
        return False
    with state.lock:
        if state.parts:
            return False  # only ever loaded into a fresh view
        state.session_names = list(header["sessions"])
        state.session_index = {name: i for i, name in enumerate(state.session_names)}
        state.writer_names = list(header["writers"])
        state.writer_index = {name: i for i, name in enumerate(state.writer_names)}
        for part in parts:
            part.no = state.next_no
            state.next_no += 1
            state.parts[part.path.name] = part
            state.by_no[part.no] = part
        for sidx, pi, row, kind in header["heads"]:
            ref = parts[pi].no << 32 | row
            state.heads[sidx] = (state.key(ref), ref, kind)
        state.idem = {k: parts[pi].no << 32 | row for k, pi, row in header["idem"]}
        state.loaded_rows = sum(len(p.ts) for p in parts)
        state.erased = erased
    return True
