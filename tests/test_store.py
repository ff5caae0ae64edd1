"""The Store contract (tests/contract.py) over every engine (`conftest.ENGINES`)."""

from __future__ import annotations

from pathlib import Path

from sessionmem import Store

from contract import StoreContract


class TestEngine(StoreContract):
    """The engine itself, as `Store` callers and every surface see it."""


def test_scaffolding_is_created_on_first_write(tmp_path: Path) -> None:
    s = Store(tmp_path / ".memory")
    s.append("alice", {"session_id": "s"})
    assert (s.root / ".gitattributes").read_text() == (
        "log/**/*.jsonl text eol=lf merge=union\nerased/**/*.jsonl text eol=lf merge=union\n"
    )
    assert (s.root / ".gitignore").read_text() == ".local/\n"
    assert "sessionmem" in (s.root / "README.md").read_text()
