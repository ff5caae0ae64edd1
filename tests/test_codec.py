"""The codec's time stamps and ids: the fast paths (the last second remembered) must give what
the plain datetime/uuid computation gives, on every path through them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from sessionmem.codec import ms_to_ts, ts_to_ms, uuid7

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
