"""The public surface: a sorted `__all__` whose every name imports (as httpx guards its own)."""

from __future__ import annotations

import sessionmem


def test_all_is_sorted_and_importable() -> None:
    assert sessionmem.__all__ == sorted(sessionmem.__all__)
    for name in sessionmem.__all__:
        assert getattr(sessionmem, name) is not None, name


def test_errors_share_one_root() -> None:
    from sessionmem import errors

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, sessionmem.SessionmemError), name
