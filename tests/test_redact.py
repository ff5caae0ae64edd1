"""Secrets never reach the log (issue 5): a corpus of realistic credentials and of innocent
look-alikes; both rates are printed (`pytest -s`) and held at 100 % / 0 %."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sessionmem import Store
from sessionmem.redact import MASK, Redactor

from conftest import DATA


def corpus(name: str) -> list[str]:
    text = (DATA / "secrets" / f"{name}.txt").read_text()
    return [line.replace("\\n", "\n") for line in text.splitlines() if line]


def longest_secret_run(original: str, redacted: str) -> int:
    """The longest run of 12+ random-looking characters of the original left in the output."""
    runs = re.findall(r"[A-Za-z0-9_/+=-]{12,}", original)
    left = [
        r
        for r in runs
        if r in redacted
        and re.search(r"\d", r)
        and re.search(r"[A-Z]", r)
        and re.search(r"[a-z]", r)
    ]
    return max((len(r) for r in left), default=0)


def test_corpus_rates() -> None:
    r = Redactor()
    positives, negatives = corpus("positives"), corpus("negatives")
    caught = [p for p in positives if MASK in r.text(p) and longest_secret_run(p, r.text(p)) == 0]
    false = [n for n in negatives if r.text(n) != n]
    print(
        f"\nredaction: {len(caught)}/{len(positives)} secrets caught "
        f"({100 * len(caught) / len(positives):.0f} %), {len(false)}/{len(negatives)} "
        f"innocent look-alikes changed ({100 * len(false) / len(negatives):.0f} %)"
    )
    assert [p for p in positives if p not in caught] == []
    assert false == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("curl -H 'Authorization: Bearer abcdef123456' x", f"curl -H 'Authorization: {MASK}' x"),
        ("psql postgresql://app:hunter2hunter2@db/app", f"psql postgresql://app:{MASK}@db/app"),
        ("password=s3cretPass!", f"password={MASK}"),
        ('DB_PASSWORD="abc12345"', f'DB_PASSWORD="{MASK}"'),
        ("password=$DB_PASSWORD", "password=$DB_PASSWORD"),
        ("max_tokens=4096", "max_tokens=4096"),
    ],
)
def test_exact_rewrites(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


def test_every_field_is_redacted_before_storing(root: Path) -> None:
    store = Store(root)
    key = "ghp_" + "A1b2C3d4E5" * 4
    snap = store.append(
        "alice",
        {
            "session_id": "s",
            "commands_run": [f"GITHUB_TOKEN={key} gh pr list"],
            "open_tasks": [f"rotate {key}"],
            "key_decisions": ["keep password=hunter2hunter2 out"],
            "metadata": {"env": {"TOKEN": key}},
            "custom": [f"Authorization: Bearer {key}"],
        },
    )
    raw = b"".join(p.read_bytes() for p in (root / "log").rglob("*.jsonl"))
    assert key.encode() not in raw and b"hunter2hunter2" not in raw
    assert snap.session_data["open_tasks"] == [f"rotate {MASK}"]
    assert snap.session_data["metadata"] == {"env": {"TOKEN": MASK}}


def test_config_adds_patterns_and_can_switch_off(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "config.toml").write_text('[redact]\npatterns = ["ACME-[0-9]{8}"]\n')
    snap = Store(root).append("alice", {"session_id": "s", "open_tasks": ["ticket ACME-12345678"]})
    assert snap.open_tasks == [f"ticket {MASK}"]
    (root / "config.toml").write_text("[redact]\nenabled = false\n")
    snap = Store(root).append("alice", {"session_id": "s", "open_tasks": ["password=hunter2x"]})
    assert snap.open_tasks == ["password=hunter2x"]
