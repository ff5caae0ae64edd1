"""The codec: every event it writes reads back as itself; its time stamps and ids — the fast
paths (the last second remembered, a seeded generator) give what the plain datetime/uuid
computation gives, and ids stay unique, across a fork too."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from sessionmem.codec import (
    LIST_FIELDS,
    MAX_SEQ,
    SCALAR_FIELDS,
    Event,
    decode,
    encode,
    ms_to_ts,
    ts_to_ms,
    uuid7,
)

MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def reference(ms: int) -> str:
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@given(
    st.integers(0, MAX_MS - 10**6),
    st.lists(st.integers(0, 1500), min_size=1, max_size=40),
)
def test_time_stamps_round_trip_within_and_across_seconds(start: int, steps: list[int]) -> None:
    ms = start
    for step in steps:  # small steps: many hits of the remembered second, some misses
        ms += step
        ts = ms_to_ts(ms)
        assert ts == reference(ms)
        assert ts_to_ms(ts) == ms


@given(st.integers(0, (1 << 48) - 1))
def test_uuid7_is_a_canonical_version_7_uuid_of_its_millisecond(ms: int) -> None:
    value = uuid7(ms)
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == ms


def _name(first: str, rest: str, most: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, b: a + b, st.sampled_from(first), st.text(st.sampled_from(rest), max_size=most)
    )


ALNUM = "abcXYZ019"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
DATA = st.fixed_dictionaries(
    {},
    optional={
        **{name: st.lists(st.text(max_size=30), max_size=5) for name in LIST_FIELDS},
        **{name: st.text(max_size=30) | st.none() for name in SCALAR_FIELDS},
        "event": st.sampled_from(["checkpoint", "pre_compact", "session_end", "later"]),
        "metadata": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4),
        "extra": JSON_VALUES,
    },
)
HEX = st.text(st.sampled_from("0123456789abcdef"), min_size=64, max_size=64)
EVENTS = st.builds(
    Event,
    id=st.integers(0, (1 << 48) - 1).map(uuid7),
    type=st.sampled_from(["snapshot", "delete"]),
    user=_name(ALNUM, ALNUM + "._@-", 127),
    session_id=_name(ALNUM, ALNUM + "._:@-", 127),
    writer=_name(ALNUM, ALNUM + "._-", 63),
    seq=st.integers(1, MAX_SEQ),
    ts=st.integers(0, MAX_MS).map(ms_to_ts),
    data=DATA,
    idem=st.none() | HEX,
    body=st.none() | HEX,
    v=st.just(1),
)


@given(EVENTS)
def test_every_event_written_reads_back_as_itself(event: Event) -> None:
    line = encode(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == event
    assert decode(line[:-1]) == event  # the newline is the file's, not the event's


def test_ids_stay_unique_once_the_generator_takes_over_and_in_a_forked_child() -> None:
    made = [uuid7(0) for _ in range(5000)]  # one millisecond: only the random bits differ
    assert len(set(made)) == len(made)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids must not repeat the parent's next ones
        os.close(read)
        os.write(write, "\n".join(uuid7(0) for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    parent = {uuid7(0) for _ in range(100)}
    with os.fdopen(read, "rb") as pipe:
        child = set(pipe.read().decode().split("\n"))
    os.waitpid(pid, 0)
    assert len(child) == 100 and not child & parent
