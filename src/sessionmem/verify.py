"""`sessionmem verify`: read every log with the store's own decoder and report what it finds;
never change a file unless asked to `repair` (docs/storage.md, "verify").

Findings have a level: `error` is damage the store skips when reading (exit code 1), `warning` is
read as it is but worth a look (a `seq` gap after checking out a branch with a shorter log, a
clock far ahead, a BOM or CRLF line ends an editor added), `info` is harmless (the same event
twice, from a union merge or a cherry-pick). Because the checks are the decoder's, "clean" means
every line of every log file is read.

`repair` resolves every error it can — torn tails, lines the decoder refuses, events in another
user's folder, a second copy of an event id with other content — by moving those bytes into
`.local/quarantine/` (nothing is deleted) and rewriting the file without them under the writer's
lock; it also drops a BOM and CRs before line ends (losslessly). It never sets aside a line the
decoder accepts. What it cannot resolve (a link, a file or folder outside the layout) it names in
`unresolved`, with what a person should do.
"""

from __future__ import annotations

import fcntl
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import erase
from .codec import BOM, DecodeError, decode, dumps, id_hash, now_ms
from .forget import purge
from .layout import Layout
from .log import MAX_CLOCK_SKEW_MS, lock_path
from .names import USER_RE, WRITER_RE


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning | info
    kind: str
    path: str
    message: str
    offset: int | None = None


@dataclass
class Report:
    files: int = 0
    events: int = 0
    findings: list[Finding] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return any(f.level == "error" for f in self.findings)

    def view(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "events": self.events,
            "clean": not self.damaged,
            "findings": [asdict(f) for f in self.findings],
            "moved": self.moved,
            "unresolved": self.unresolved,
        }


@dataclass
class _File:
    path: Path
    prel: str
    user: str
    raw: bytes
    erased: erase.Erased  # what the user's erase records hide
    bad: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) to set aside
    text: bool = False  # a BOM or CRLF to drop
    erased_present: int = 0  # erased lines still in the file


@dataclass
class _Copy:
    """Where an event id was seen first (per user: ids are scoped to their user)."""

    file: _File
    offset: int
    length: int
    raw: bytes
    own: bool  # in its writer's own file


def verify(root: Path | str, *, repair: bool = False) -> Report:
    layout = Layout(root)
    report = Report()
    if not layout.log.exists() and not layout.log.is_symlink():
        return report
    if layout.log.is_symlink() or not layout.log.is_dir():
        _outside(
            report, "log", "log/ is a link or not a folder; sessionmem reads no log through it"
        )
        return report
    files: list[_File] = []
    erasures: dict[str, erase.Erased] = defaultdict(erase.Erased)
    for entry in sorted(layout.log.iterdir()):
        rel = str(entry.relative_to(layout.root))
        if entry.is_symlink():
            _outside(report, rel, "a link, not a user folder: sessionmem never follows links")
            continue
        if not entry.is_dir() or not USER_RE.match(entry.name):
            _outside(report, rel, "not a user folder (log/<user>/)")
            continue
        for path in sorted(entry.iterdir()):
            prel = str(path.relative_to(layout.root))
            if path.is_symlink():
                _outside(report, prel, "a link, not a log file: sessionmem never follows links")
                continue
            if path.is_file() and path.name.startswith(".") and path.name.endswith(".forget"):
                report.findings.append(
                    Finding("warning", "forget-leftover", prel, "a killed forget's temporary "
                            "file (it holds no erased line); --repair removes it")
                )  # fmt: skip
                if repair:
                    path.unlink()
                    report.moved.append(f"{prel}: removed")
                continue
            if not path.is_file() or path.suffix != ".jsonl" or not WRITER_RE.match(path.stem):
                _outside(report, prel, "not a log file (<writer>.jsonl)")
                continue
            try:
                raw = path.read_bytes()
            except OSError as exc:
                report.findings.append(
                    Finding("error", "unreadable", prel, f"cannot be read: {exc.strerror}")
                )
                report.unresolved.append(f"{prel}: cannot be read ({exc.strerror}); fix its mode")
                continue
            report.files += 1
            if entry.name not in erasures:
                erasures[entry.name] = erase.load(erase.folder(layout.root, entry.name))
            files.append(_File(path, prel, entry.name, raw, erasures[entry.name]))
    by_id: dict[tuple[str, str], _Copy] = {}
    by_writer: dict[tuple[str, str], list[tuple[int, str, str, int]]] = defaultdict(list)
    for f in files:
        _check_file(f, report, by_id, by_writer)
    for (user, writer), marks in sorted(by_writer.items()):
        _check_order(user, writer, marks, report, erasures[user].seqs)
    if repair:
        for f in files:
            if f.bad or f.text:
                report.moved.append(_rewrite(layout, f))
        present = sorted({f.user for f in files if f.erased_present})
        if present:
            # lazy: .store costs 20 ms at start-up (only a repair of erased lines needs it)
            from .store import Store

            store = Store(layout.root)
            for user in present:
                count = purge(store, user)
                report.moved.append(f"log/{user}: took out {count} erased line(s)")
    return report


def _outside(report: Report, rel: str, why: str) -> None:
    report.findings.append(Finding("error", "outside-layout", rel, why))
    report.unresolved.append(
        f"{rel}: {why}. verify --repair does not move it; move it out of .memory/log/ (or make "
        "it a real folder or file)."
    )


def _check_file(
    f: _File,
    report: Report,
    by_id: dict[tuple[str, str], _Copy],
    by_writer: dict[tuple[str, str], list[tuple[int, str, str, int]]],
) -> None:
    raw, prel = f.raw, f.prel
    cut = raw.rfind(b"\n") + 1
    if cut < len(raw):
        report.findings.append(
            Finding(
                "error",
                "torn-tail",
                prel,
                f"{len(raw) - cut} bytes after the last newline (a writer died mid-write)",
                cut,
            )
        )
        f.bad.append((cut, len(raw) - cut))
    crlf = 0
    offset = 0
    horizon = now_ms() + MAX_CLOCK_SKEW_MS
    for line in raw[:cut].split(b"\n")[:-1] if cut else []:
        here = offset
        offset += len(line) + 1
        if line.endswith(b"\r"):
            crlf += 1
            f.text = True
        if line.startswith(BOM):
            f.text = True
            report.findings.append(
                Finding(
                    "warning", "bom", prel, "a UTF-8 BOM before this line (read as if not)", here
                )
            )
        if not line.strip():
            continue
        try:
            ev = decode(line)
        except DecodeError as exc:
            report.findings.append(Finding("error", "bad-line", prel, str(exc), here))
            f.bad.append((here, len(line) + 1))
            continue
        if ev.user != f.user:
            report.findings.append(
                Finding("error", "wrong-user", prel, f"event of user {ev.user!r}", here)
            )
            f.bad.append((here, len(line) + 1))
            continue
        erased = f.erased
        if erased and erased.hides(id_hash(ev.id), line, ev.session_id, ev.ts_ms):
            report.findings.append(
                Finding(
                    "warning",
                    "erased-present",
                    prel,
                    f"event {ev.id} was erased (an erase record names it) but is still in this "
                    "file: it is not read; --repair or the next write removes it",
                    here,
                )
            )
            f.erased_present += 1
            continue
        report.events += 1
        if ev.writer != f.path.stem:
            report.findings.append(
                Finding(
                    "warning",
                    "foreign-writer",
                    prel,
                    f"event written by {ev.writer!r} in {f.path.name}",
                    here,
                )
            )
        if ev.ts_ms > horizon:
            report.findings.append(
                Finding(
                    "warning",
                    "future-ts",
                    prel,
                    f"ts {ev.ts} is more than {MAX_CLOCK_SKEW_MS // 60000} minutes ahead of this "
                    "machine's clock (a clone with a wrong clock?): it is read, and sorts after "
                    "what is written since",
                    here,
                )
            )
        body = line.removeprefix(BOM).removesuffix(b"\r")
        key = (f.user, ev.id)
        seen = by_id.get(key)
        own = ev.writer == f.path.stem
        if seen is None:
            by_id[key] = _Copy(f, here, len(line) + 1, body, own)
            by_writer[(f.user, ev.writer)].append((ev.seq, ev.ts, prel, here))
        elif seen.raw == body:
            report.findings.append(
                Finding(
                    "info",
                    "duplicate",
                    prel,
                    f"event {ev.id} also at {seen.file.prel}@{seen.offset} (counted once)",
                    here,
                )
            )
        else:
            # Two events with one id: the copy in its writer's own file is the original, else
            # the first in file order; the other is the damage.
            drop = _Copy(f, here, len(line) + 1, body, own)
            if own and not seen.own:
                by_id[key], drop, seen = drop, seen, drop
            report.findings.append(
                Finding(
                    "error",
                    "conflicting-duplicate",
                    drop.file.prel,
                    f"event {ev.id} differs from the copy at {seen.file.prel}@{seen.offset}, "
                    "which is kept (repair sets this one aside)",
                    drop.offset,
                )
            )
            drop.file.bad.append((drop.offset, drop.length))
    if crlf:
        report.findings.append(
            Finding("warning", "crlf", prel, f"{crlf} lines end in CRLF (read as if LF)")
        )


def _check_order(
    user: str,
    writer: str,
    marks: list[tuple[int, str, str, int]],
    report: Report,
    erased: set[tuple[str, int]],
) -> None:
    marks.sort()
    prev: tuple[int, str, str, int] | None = None
    prev_seq, prev_ts = 0, ""
    for mark in marks:
        seq, ts, prel, offset = mark
        if seq == prev_seq and prev is not None:
            report.findings.append(
                Finding(
                    "warning",
                    "seq-reused",
                    prel,
                    f"seq {seq} of writer {writer} is also used by the event at "
                    f"{prev[2]}@{prev[3]}: both are read (the writer's state was lost, e.g. "
                    ".local/ deleted after checking out an older log); nothing to repair",
                    offset,
                )
            )
        elif seq > prev_seq + 1 and not all(
            (writer, s) in erased for s in range(prev_seq + 1, min(seq, prev_seq + 10_001))
        ):
            report.findings.append(
                Finding(
                    "warning",
                    "seq-gap",
                    prel,
                    f"writer {writer}: seq {prev_seq + 1}..{seq - 1} missing (lines lost, "
                    "or written on a branch not merged here)",
                    offset,
                )
            )
        if prev_ts and ts < prev_ts:
            report.findings.append(
                Finding(
                    "warning",
                    "ts-order",
                    prel,
                    f"writer {writer}: seq {seq} has ts {ts}, before seq {prev_seq}'s {prev_ts}",
                    offset,
                )
            )
        prev, prev_seq, prev_ts = mark, seq, max(ts, prev_ts)


def _rewrite(layout: Layout, f: _File) -> str:
    """Move the bad byte ranges into quarantine and rewrite the file without them (and without
    a BOM or CRs before line ends), atomically, under the writer's lock. Nothing is deleted:
    the quarantine file holds every byte removed."""
    layout.quarantine.mkdir(parents=True, exist_ok=True)
    layout.locks.mkdir(parents=True, exist_ok=True)
    path = f.path
    with open(lock_path(layout, f.user, path.stem), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        raw = path.read_bytes()
        if raw[: len(f.raw)] != f.raw:
            return f"{f.prel}: changed while it was checked; nothing done (run verify again)"
        kept, removed, pos = [], [], 0
        for off, length in sorted(f.bad):
            kept.append(raw[pos:off])
            removed.append(
                {"offset": off, "bytes": raw[off : off + length].decode("utf-8", "replace")}
            )
            pos = off + length
        kept.append(raw[pos:])  # including anything appended since the check
        text = b"".join(kept)
        if f.text:
            text = text.removeprefix(BOM).replace(b"\n" + BOM, b"\n").replace(b"\r\n", b"\n")
        done = []
        if removed:
            qname = f"{f.user}~{path.stem}.{now_ms()}.bad.jsonl"
            qpath = layout.quarantine / qname
            with open(qpath, "wb") as q:
                for item in removed:
                    q.write(dumps({"file": f.prel, **item}) + b"\n")
                q.flush()
                os.fsync(q.fileno())
            pieces = "piece" if len(removed) == 1 else "pieces"
            where = qpath.relative_to(layout.root)
            done.append(f"set aside {len(removed)} bad {pieces} into {where}")
        if f.text:
            done.append("dropped its BOM / CRs before line ends (every event kept)")
        tmp = path.with_name(f".{path.name}.repair")
        with open(tmp, "wb") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    return f"{f.prel}: " + "; ".join(done)
