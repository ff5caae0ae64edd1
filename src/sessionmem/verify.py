"""`sessionmem verify`: read every log and report damage; never change a file unless asked to
`repair`, which sets torn tails and bad lines aside into `.local/quarantine/` (issue 4).

Findings have a level: `error` is damage (exit code 1), `warning` is worth a look but expected in
some histories (a `seq` gap after checking out a branch with a shorter log), `info` is harmless
(the same event twice, from a union merge or a cherry-pick).
"""

from __future__ import annotations

import fcntl
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .codec import USER_RE, WRITER_RE, DecodeError, decode, dumps, now_ms
from .layout import Layout
from .log import lock_path


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
        }


@dataclass
class _Seen:
    path: str
    offset: int
    raw: bytes


def verify(root: Path | str, *, repair: bool = False) -> Report:
    layout = Layout(root)
    report = Report()
    by_id: dict[str, _Seen] = {}
    by_writer: dict[tuple[str, str], list[tuple[int, str, str, int]]] = defaultdict(list)
    if not layout.log.is_dir():
        return report
    for entry in sorted(layout.log.iterdir()):
        rel = entry.relative_to(layout.root)
        if entry.is_symlink() or not entry.is_dir() or not USER_RE.match(entry.name):
            report.findings.append(
                Finding("error", "outside-layout", str(rel), "not a user folder (log/<user>/)")
            )
            continue
        for path in sorted(entry.iterdir()):
            prel = str(path.relative_to(layout.root))
            ok_name = path.suffix == ".jsonl" and WRITER_RE.match(path.stem)
            if path.is_symlink() or not path.is_file() or not ok_name:
                report.findings.append(
                    Finding("error", "outside-layout", prel, "not a log file (<writer>.jsonl)")
                )
                continue
            report.files += 1
            bad = _check_file(layout, entry.name, path, prel, report, by_id, by_writer)
            if repair and bad:
                report.moved.append(_set_aside(layout, entry.name, path, bad))
    for (user, writer), marks in sorted(by_writer.items()):
        _check_order(user, writer, marks, report)
    return report


def _check_file(
    layout: Layout,
    user: str,
    path: Path,
    prel: str,
    report: Report,
    by_id: dict[str, _Seen],
    by_writer: dict[tuple[str, str], list[tuple[int, str, str, int]]],
) -> list[tuple[int, int]]:
    """Check one file; returns the (offset, length) of bytes to set aside."""
    raw = path.read_bytes()
    bad: list[tuple[int, int]] = []
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
        bad.append((cut, len(raw) - cut))
    offset = 0
    for line in raw[:cut].split(b"\n")[:-1] if cut else []:
        here = offset
        offset += len(line) + 1
        if not line.strip():
            continue
        try:
            ev = decode(line)
        except DecodeError as exc:
            report.findings.append(Finding("error", "bad-line", prel, str(exc), here))
            bad.append((here, len(line) + 1))
            continue
        if ev.user != user:
            report.findings.append(
                Finding("error", "wrong-user", prel, f"event of user {ev.user!r}", here)
            )
            bad.append((here, len(line) + 1))
            continue
        report.events += 1
        if ev.writer != path.stem:
            report.findings.append(
                Finding(
                    "warning",
                    "foreign-writer",
                    prel,
                    f"event written by {ev.writer!r} in {path.name}",
                    here,
                )
            )
        seen = by_id.get(ev.id)
        if seen is None:
            by_id[ev.id] = _Seen(prel, here, line)
            by_writer[(user, ev.writer)].append((ev.seq, ev.ts, prel, here))
        elif seen.raw == line:
            report.findings.append(
                Finding(
                    "info",
                    "duplicate",
                    prel,
                    f"event {ev.id} also at {seen.path}:{seen.offset} (counted once)",
                    here,
                )
            )
        else:
            report.findings.append(
                Finding(
                    "error",
                    "conflicting-duplicate",
                    prel,
                    f"event {ev.id} differs from the one at {seen.path}:{seen.offset}",
                    here,
                )
            )
    return bad


def _check_order(
    user: str, writer: str, marks: list[tuple[int, str, str, int]], report: Report
) -> None:
    marks.sort()
    prev_seq, prev_ts = 0, ""
    for seq, ts, prel, offset in marks:
        if seq == prev_seq:
            report.findings.append(
                Finding(
                    "error",
                    "seq-reused",
                    prel,
                    f"seq {seq} of writer {writer} used by two different events",
                    offset,
                )
            )
        elif seq > prev_seq + 1:
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
        prev_seq, prev_ts = seq, max(ts, prev_ts)


def _set_aside(layout: Layout, user: str, path: Path, bad: list[tuple[int, int]]) -> str:
    """Move bad byte ranges into quarantine and rewrite the file without them, atomically,
    under the writer's lock. Nothing is deleted: the quarantine file holds every byte removed."""
    layout.quarantine.mkdir(parents=True, exist_ok=True)
    layout.locks.mkdir(parents=True, exist_ok=True)
    with open(lock_path(layout, user, path.stem), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        raw = path.read_bytes()
        drop = sorted(bad)
        kept, removed, pos = [], [], 0
        for off, length in drop:
            kept.append(raw[pos:off])
            removed.append(
                {"offset": off, "bytes": raw[off : off + length].decode("utf-8", "replace")}
            )
            pos = off + length
        kept.append(raw[pos:])
        qname = f"{user}~{path.stem}.{now_ms()}.bad.jsonl"
        qpath = layout.quarantine / qname
        with open(qpath, "wb") as q:
            for item in removed:
                q.write(dumps({"file": str(path.relative_to(layout.root)), **item}) + b"\n")
            q.flush()
            os.fsync(q.fileno())
        tmp = path.with_name(f".{path.name}.repair")
        with open(tmp, "wb") as f:
            f.write(b"".join(kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return (
        f"{path.relative_to(layout.root)}: set aside {len(removed)} bad piece(s) into "
        f"{qpath.relative_to(layout.root)}"
    )
