"""Whatever bytes git, an editor or another clone brings into `.memory/`, the fold never raises,
every valid event is read exactly as the decoder reads it, the cache never changes an answer, and
`verify` reports every line the store skips (docs/storage.md, "Reading").

Real logs (written by the store, two writers), one random mutation each, then three readers: a
cold fold, a warm start from a cache written before the mutation, and a running store that had
folded the files before they changed. Each must equal the oracle (tests/oracle.py), which reads
line by line with the codec's decoder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionmem import Store
from sessionmem.codec import BOM, DecodeError, decode, id_hash
from sessionmem.fold import fold_lines, new_part
from sessionmem.rows import FoldResult, Rows
from sessionmem.verify import verify

from oracle import assert_matches, events_of

WRONG_VALUES = [None, 1, -1, 1.5, True, "x", "", [], {}, ["x"], {"a": 1}]
ENVELOPE = ["v", "id", "type", "user", "session_id", "writer", "seq", "ts", "data", "idem"]
DATA_FIELDS = ["open_tasks", "files_modified", "project_path", "event", "metadata", "git_branch"]
BIG_INTS = [b"0", b"-1", b"9007199254740992", b"9223372036854775807", b"9223372036854775808",
            b"18446744073709551616", b"1e400", b"1e3"]  # fmt: skip
TIMES = ["9999-12-31T23:59:59.999Z", "2099-01-01T00:00:00.000Z", "2026-13-01T00:00:00.000Z",
         "2026-01-01T00:00:00.\u0661\u0662\u0663Z", "1969-12-31T23:59:59.999Z",
         "2026-01-01 00:00:00.000Z", "2026-02-30T00:00:00.000Z", "", "0000-01-01T00:00:00.000Z",
         "2026-01-01T24:00:00.000Z", "2026-01-01T00:00:00.000+01:00"]  # fmt: skip
KINDS = ["flip", "truncate", "type", "data-type", "bigint", "ts", "bom", "crlf", "dup",
         "reorder", "other-user", "garbage", "blank"]  # fmt: skip

mutations_run = {"count": 0}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real memory folder: two writers (clones), several sessions, a delete, retries."""
    root = tmp_path_factory.mktemp("base") / ".memory"
    other = tmp_path_factory.mktemp("other") / ".memory"
    a, b = Store(root, durability="fast"), Store(other, durability="fast")
    for i in range(24):
        store = a if i % 3 else b
        store.append(
            "alice",
            {
                "session_id": f"s{i % 5}",
                "open_tasks": [f"task {i}", "Write tests"],
                "files_modified": ["app/main.py"],
                "key_decisions": ["Use orjson"] if i % 2 else [],
                "git_branch": "main",
                "metadata": {"n": i},
            },
            idempotency_key=f"k{i}" if i % 4 == 0 else None,
        )
        if i == 15:
            store.delete("alice", "s2")
    a.close()
    b.close()
    (src,) = (other / "log" / "alice").glob("*.jsonl")
    shutil.copy(src, root / "log" / "alice" / src.name)
    return root


def _mutate(lines: list[bytes], kind: str, draw: st.DrawFn) -> tuple[list[bytes], int]:
    """One mutation of a file's lines; returns the new lines and the index of the line it made
    or changed (-1 when no single line is new)."""
    lines = list(lines)
    i = draw(st.integers(0, len(lines) - 1))
    line = lines[i]
    if kind == "flip":
        at = draw(st.integers(0, len(line) - 2))
        lines[i] = line[:at] + bytes([line[at] ^ draw(st.integers(1, 255))]) + line[at + 1 :]
    elif kind == "truncate":
        lines[i] = line[: draw(st.integers(0, len(line) - 2))] + b"\n"
    elif kind in ("type", "data-type", "other-user"):
        record = orjson.loads(line)
        if kind == "type":
            record[draw(st.sampled_from(ENVELOPE))] = draw(st.sampled_from(WRONG_VALUES))
        elif kind == "data-type":
            record["data"][draw(st.sampled_from(DATA_FIELDS))] = draw(st.sampled_from(WRONG_VALUES))
        else:
            record["user"] = "bob"
        lines[i] = orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"
    elif kind == "bigint":
        start = line.index(b'"seq":') + 6
        end = line.index(b",", start)
        lines[i] = line[:start] + draw(st.sampled_from(BIG_INTS)) + line[end:]
    elif kind == "ts":
        record = orjson.loads(line)
        record["ts"] = draw(st.sampled_from(TIMES))
        lines[i] = orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"
    elif kind == "bom":
        lines[0] = BOM + lines[0]
        return lines, 0
    elif kind == "crlf":
        lines = [x[:-1] + b"\r\n" for x in lines]
        return lines, -1
    elif kind == "dup":
        lines.insert(draw(st.integers(0, len(lines))), line)
        return lines, -1
    elif kind == "reorder":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        return lines, -1
    elif kind == "garbage":
        junk = draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ")
        lines.insert(i, junk + b"\n")
    elif kind == "blank":
        lines.insert(i, draw(st.sampled_from([b"\n", b"   \n", b"\r\n", b"\t\n"])))
        return lines, -1
    return lines, i


def _accepted(line: bytes, user: str = "alice") -> bool:
    try:
        return decode(line).user == user
    except DecodeError:
        return False


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_one_mutation_never_breaks_a_reader(
    base: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("m") / ".memory"
    shutil.copytree(base, root)
    running = Store(root, durability="fast")
    running.sessions("alice")  # folded before the change, as a server would have
    files = sorted((root / "log" / "alice").glob("*.jsonl"))
    path = data.draw(st.sampled_from(files))
    kind = data.draw(st.sampled_from(KINDS))
    original = path.read_bytes().splitlines(keepends=True)
    lines, changed = _mutate(original, kind, data.draw)
    replaced = original[changed] if changed >= 0 and len(lines) == len(original) else b""
    path.write_bytes(b"".join(lines))  # in place: same inode, maybe the same size
    mutations_run["count"] += 1

    expected = assert_matches(Store(root, durability="fast", cache=False), "alice")
    assert_matches(Store(root, durability="fast"), "alice")  # warm, from the old cache
    running._views.get("alice").state.full_at = 0  # as the watcher would, on a change in place
    assert_matches(running, "alice")

    # Every event the mutation did not touch is still read.
    before = events_of(base, "alice")
    after = events_of(root, "alice")
    touched = {eid for eid in before if eid.encode() in replaced}
    assert set(before) - touched <= set(after), f"{kind}: an untouched event was lost"
    assert expected == assert_matches(Store(root, durability="fast", cache=False), "alice")

    # verify reports every line the store skips, and a repair keeps every line it reads.
    report = verify(root)
    bad_offsets = {f.offset for f in report.findings if f.level == "error"}
    offset = 0
    for line in lines:
        if line.strip() and not _accepted(line):
            assert offset in bad_offsets, f"{kind}: skipped line at {offset} not reported"
        offset += len(line)
    if changed >= 0 and _accepted(lines[changed]):
        assert offset not in bad_offsets
    answers = _answers(root)
    verify(root, repair=True)
    assert not verify(root).damaged
    assert _answers(root) == answers, "repair changed an answer"


def _answers(root: Path) -> dict[str, list[str]]:
    from oracle import projected

    return projected(Store(root, durability="fast", cache=False), "alice")


def test_the_mutations_ran() -> None:
    # Runs after the property test in file order: the count the closing note quotes.
    assert mutations_run["count"] >= 100
    print(f"\nmutations run: {mutations_run['count']}")


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["type", "data-type", "bigint", "ts", "flip", "truncate", "other-user"]),
    data=st.data(),
)
def test_the_fast_path_accepts_exactly_what_the_decoder_accepts(
    base: Path, kind: str, data: st.DataObject
) -> None:
    """A line after one of the same session, writer and second takes the fold's inline path;
    it must keep a line exactly when `codec.decode` does, and read its fields the same."""
    path = max((base / "log" / "alice").glob("*.jsonl"), key=lambda p: p.stat().st_size)
    lines = path.read_bytes().splitlines(keepends=True)
    first = lines[0]
    twin = orjson.loads(first)
    twin["id"] = twin["id"][:-4] + "abcd"
    twin["seq"] = 2
    second = orjson.dumps(twin, option=orjson.OPT_SORT_KEYS) + b"\n"
    mutated, _ = _mutate([second], kind, data.draw)
    view = Rows(path.parent, "alice")
    part = new_part(view, "x.jsonl")
    probe = path.parent.parent.parent / ".local" / "probe.jsonl"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(first + mutated[0])
    part.path = probe
    fd = os.open(probe, os.O_RDONLY)
    try:
        fold_lines(view, part, fd, FoldResult())
    finally:
        os.close(fd)
    pieces = mutated[0].split(b"\n")[:-1]  # a flipped byte may have made a newline
    accepted = [p for p in pieces if _accepted(p)]
    refused = [p for p in pieces if p.strip() and not _accepted(p)]
    assert len(part.ts) == 1 + len(accepted)
    assert part.problem_count == len(refused)
    if len(pieces) == 1 and accepted:
        ev = decode(mutated[0])
        assert (part.seq[1], part.ts[1], part.idh[1]) == (ev.seq, ev.ts_ms, id_hash(ev.id))
        assert view.writer_names[part.widx[1]] == ev.writer
        assert part.kind[1] == (ev.type == "delete")
        (sidx,) = [s for s, rows in part.by_session.items() if 1 in rows]
        assert view.session_names[sidx] == ev.session_id
