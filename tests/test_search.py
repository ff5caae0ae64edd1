"""Search (docs/decisions.md, "Search"): ranked, scoped and filtered over a hand-built corpus;
deletes, a git checkout and back, processes appending while another searches, users kept apart,
hostile queries — and the same answers on every surface."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessionmem import Store
from sessionmem.errors import InvalidInput
from sessionmem.search import COLUMNS, fts_query

from conftest import sessionmem_cmd
from helpers import commit_all, git, new_repo

Engine = Callable[[Path], Any]  # conftest.ENGINES: the search contract runs on each

CORPUS = [
    ("limits", {"key_decisions": ["Rate limiting uses a token bucket per API key"],
                "open_tasks": ["Document the rate limiting defaults"],
                "files_modified": ["src/app/limits.py"], "git_branch": "main",
                "metadata": {"agent": "claude-code"}}),
    ("proxy", {"key_decisions": ["The proxy keeps its own limits"],
               "commands_run": ["pytest tests/test_router.py -k rate"],
               "files_modified": ["src/app/router.py"], "git_branch": "feature/proxy",
               "metadata": {"agent": "codex"}}),
    ("cache", {"open_tasks": ["Migrate the cache to redis"],
               "key_decisions": ["Cache keys carry the schema version"],
               "event": "session_end"}),
]  # fmt: skip


def _corpus(store: Store, user: str = "dev") -> None:
    for sid, data in CORPUS:
        store.save(user, {"session_id": sid, "project_path": "/w/app", **data})


def _ids(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.session_id for h in page.items]


def test_ranking_scopes_filters_and_snippets(tmp_path: Path, engine_factory: Engine) -> None:
    store = engine_factory(tmp_path / ".memory")
    _corpus(store)
    # "rate limiting" twice in limits, once (as a prefix) in proxy: relevance first
    assert _ids(store.search("dev", "rate")) == ["limits", "proxy"]
    hit = store.search("dev", '"token bucket"').items[0]
    assert (hit.session_id, hit.version, hit.field) == ("limits", 1, "key_decisions")
    assert hit.snippet == "Rate limiting uses a [token bucket] per API key"
    assert _ids(store.search("dev", "task:cache")) == ["cache"]
    assert _ids(store.search("dev", "decision:cache")) == ["cache"]
    assert _ids(store.search("dev", "file:router")) == ["proxy"]
    assert _ids(store.search("dev", "command:router")) == ["proxy"]
    assert _ids(store.search("dev", "task:router")) == []
    assert _ids(store.search("dev", "migr*")) == ["cache"]
    assert _ids(store.search("dev", "limit*", git_branch="feature/proxy")) == ["proxy"]
    assert _ids(store.search("dev", "limit*", agent="claude-code")) == ["limits"]
    assert _ids(store.search("dev", "cache", event="session_end")) == ["cache"]
    assert _ids(store.search("dev", "limit*", session_id="proxy")) == ["proxy"]
    assert _ids(store.search("dev", "limit*", since="2999-01-01")) == []
    assert len(_ids(store.search("dev", "limit*", until="2999-01-01"))) == 2
    # paging: one at a time, the cursor walks the same order
    first = store.search("dev", "rate", limit=1)
    second = store.search("dev", "rate", limit=1, cursor=first.next_cursor)
    assert _ids(first) + _ids(second) == ["limits", "proxy"] and second.next_cursor is None


def test_latest_versions_by_default_every_version_on_request_and_deletes(
    tmp_path: Path, engine_factory: Engine
) -> None:
    store = engine_factory(tmp_path / ".memory")
    _corpus(store)
    store.save("dev", {"session_id": "cache", "open_tasks": ["Benchmark the cache"]})
    assert _ids(store.search("dev", "redis")) == []  # only version 1 said it
    every = store.search("dev", "redis", all_versions=True)
    assert [(h.session_id, h.version) for h in every.items] == [("cache", 1)]
    store.delete("dev", "proxy")
    assert _ids(store.search("dev", "router")) == []
    assert _ids(store.search("dev", "router", all_versions=True)) == []


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ('"unbalanced', "unbalanced quote"),
        ("x" * 10_000, "at most 1000"),
        ("author:me", "unknown field author:"),
        ("*** ()", "no word"),
        ("", "non-empty"),
    ],
)
def test_hostile_queries_are_clear_errors(
    tmp_path: Path, query: str, words: str, engine_factory: Engine
) -> None:
    store = engine_factory(tmp_path / ".memory")
    _corpus(store)
    with pytest.raises(InvalidInput) as caught:
        store.search("dev", query)
    assert words in str(caught.value) and caught.value.errors[0].field == "q"


def test_query_text_is_never_fts_syntax(tmp_path: Path, engine_factory: Engine) -> None:
    store = engine_factory(tmp_path / ".memory")
    _corpus(store)
    for text in ("NEAR(rate limiting)", "rate OR cache", "rate NOT proxy", "^rate", "rate*:",
                 "{task}: cache", "rate - limiting", "(cache"):  # fmt: skip
        expression = fts_query(text)
        outside = re.sub(r'"[^"]*"', " ", expression).replace(":", " ").replace("*", " ")
        assert set(outside.split()) <= {"AND", *COLUMNS}, expression  # only our own syntax
        store.search("dev", text)  # never an error from the engine
    assert _ids(store.search("dev", "rate OR cache")) == []  # every word required, OR a word


def test_users_never_see_each_others_text(tmp_path: Path) -> None:
    store = Store(tmp_path / ".memory")
    _corpus(store, "alice")
    store.save("bob", {"session_id": "b1", "key_decisions": ["bob's secret plan"]})
    assert _ids(store.search("bob", "rate")) == [] and _ids(store.search("alice", "secret")) == []
    assert sorted(
        p.name for p in (tmp_path / ".memory" / ".local" / "search").glob("*.sqlite")
    ) == [
        "alice.sqlite",
        "bob.sqlite",
    ]


def test_a_checkout_and_back_gives_what_a_fresh_index_gives(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    root = repo / ".memory"
    store = Store(root)
    _corpus(store)
    commit_all(repo, "memory v1")
    store.save("dev", {"session_id": "later", "key_decisions": ["Rate limits move to the edge"]})
    commit_all(repo, "memory v2")
    queries = ["rate", "edge", "cache", "file:router"]
    before = {q: _ids(store.search("dev", q)) for q in queries}
    assert before["edge"] == ["later"]
    git(repo, "checkout", "-q", "HEAD~1")
    assert _ids(store.search("dev", "edge")) == []  # the index followed the file back
    fresh = Store(root, cache=False)
    for q in queries:
        assert _ids(store.search("dev", q)) == _ids(fresh.search("dev", q)), q
    git(repo, "checkout", "-q", "-")
    for q in queries:
        assert _ids(store.search("dev", q)) == before[q], q
    (root / ".local" / "search" / "dev.sqlite").unlink()  # disposable: rebuilt on demand
    assert {q: _ids(Store(root).search("dev", q)) for q in queries} == before


WRITER = """
import sys
from sessionmem import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.save("dev", {"session_id": f"{sys.argv[2]}-{i % 5}",
                       "key_decisions": [f"decision {sys.argv[2]} number {i} about caching"]})
"""


def test_two_processes_append_while_a_third_searches(tmp_path: Path) -> None:
    root = tmp_path / ".memory"
    Store(root).save("dev", {"session_id": "seed", "key_decisions": ["about caching"]})
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), name, "60"])
        for name in ("w1", "w2")
    ]
    searcher = Store(root)
    seen: list[int] = []
    errors: list[BaseException] = []

    def search() -> None:
        try:
            while True:  # at least once, then as long as a writer runs
                seen.append(len(searcher.search("dev", "caching", limit=1000).items))
                if all(w.poll() is not None for w in writers):
                    break
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=search)
    thread.start()
    for w in writers:
        assert w.wait(120) == 0
    thread.join(60)
    assert not errors, errors
    final = searcher.search("dev", "caching", limit=1000)
    assert sorted(_ids(final)) == sorted(["seed"] + [f"w{k}-{i}" for k in (1, 2) for i in range(5)])
    every = searcher.search("dev", "caching", all_versions=True, limit=1000)
    assert len(every.items) == 121  # each snapshot once
    assert seen and max(seen) <= 11


def test_every_surface_gives_the_same_hits(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from sessionmem.http.app import create_app
    from sessionmem.keys import KeyRing

    root = tmp_path / ".memory"
    store = Store(root)
    _corpus(store)
    expected = [h.view() for h in store.search("dev", "rate limit*").items]
    key = KeyRing(store.layout).create("dev")[1]
    other = KeyRing(store.layout).create("eve")[1]
    with TestClient(create_app(store)) as http:
        got = http.get("/api/v1/public/memory/v2/search", params={"q": "rate limit*"},
                       headers={"x-api-key": key})  # fmt: skip
        assert got.status_code == 200 and got.json()["items"] == expected
        bad = http.get("/api/v1/public/memory/v2/search", params={"q": '"x'},
                       headers={"x-api-key": key})  # fmt: skip
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "q"
        assert http.get("/api/v1/public/memory/v2/search", params={"q": "rate"},
                        headers={"x-api-key": other}).json()["items"] == []  # fmt: skip
    run = subprocess.run(
        [*sessionmem_cmd(), "search", "rate limit*", "--json", "--root", str(root),
         "--user", "dev"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["items"] == expected


def test_a_damaged_index_is_a_clear_503_and_rebuilt_once_deleted(tmp_path: Path) -> None:
    from sessionmem.errors import StorageError

    root = tmp_path / ".memory"
    _corpus(Store(root))
    index = root / ".local" / "search" / "dev.sqlite"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError) as caught:
        Store(root).search("dev", "rate")
    assert "delete it" in str(caught.value)
    index.unlink()
    assert _ids(Store(root).search("dev", "rate")) == ["limits", "proxy"]
