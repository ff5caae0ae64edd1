"""What a hostile workspace can hand sessionmem (docs/decisions.md, "A hostile workspace"):
special files and pathological lines as transcripts, terminal escapes in stored text, impossible
dates — each refused or read safely, never a hang, a crash or a lost save."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transcripts as t
from sessionmem import InvalidInput, Store
from sessionmem.integrations.agents import READERS
from sessionmem.integrations.incremental import read_transcript
from sessionmem.integrations.transcript import Reader, parse_transcript, read_lines

from conftest import DATA, run_hook, sessionmem_cmd
from helpers import commit_all, new_repo

REAL = sorted((DATA / "transcripts").glob("*/*.json*"))


def _log(repo: Path) -> str:
    return (repo / ".memory" / ".local" / "hooks.log").read_text()


# --- hooks: only regular files, bounded, total ---------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "folder"])
def test_a_special_file_as_transcript_is_refused_at_once(repo, tmp_path: Path, kind: str) -> None:
    repo, env = repo
    if kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    elif kind == "folder":
        path = tmp_path
    else:
        path = Path(kind)
    # (a guard against a hang, not a timing assertion: the hook answers at once or not at all)
    run = run_hook(
        {"session_id": "s", "cwd": str(repo), "transcript_path": str(path),
         "hook_event_name": "PreCompact"},
        repo, env,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout == ""
    assert f"cannot read the transcript {path}: not a regular file" in _log(repo)


def test_a_line_nested_five_thousand_deep_loses_nothing_else(repo, tmp_path: Path) -> None:
    repo, env = repo
    deep = "[" * 5000 + "]" * 5000
    nested = '{"type": "user", "message": {"content": ' + "[" * 5000 + "]" * 5000 + "}}"
    path = tmp_path / "t.jsonl"
    lines = [t.user("fix the parser"), t.tool("Bash", {"command": "pytest -q"})]
    path.write_text(
        json.dumps(lines[0]) + "\n" + deep + "\n" + nested + "\n" + json.dumps(lines[1]) + "\n"
    )
    run = run_hook(
        {"session_id": "s", "cwd": str(repo), "transcript_path": str(path),
         "hook_event_name": "SessionEnd"},
        repo, env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = Store(repo / ".memory").get("dev", "s").session_data
    assert data["commands_run"] == ["pytest -q"] and data["requests"] == ["fix the parser"]
    assert "2 skipped" in _log(repo)


def test_a_huge_transcript_is_read_in_bounded_steps(tmp_path: Path, monkeypatch) -> None:
    from sessionmem.integrations import incremental

    monkeypatch.setattr(incremental, "MAX_READ", 4096)
    path = tmp_path / "t.jsonl"
    lines = [t.tool("Bash", {"command": f"echo {i} " + "x" * 200}) for i in range(100)]
    t.write(path, lines)
    state = tmp_path / "state"
    seen: list[str] = []
    for _ in range(20):
        parsed, how = read_transcript(path, "/w/app", state)
        seen = parsed.commands_run
        if "the next reads on" not in how:
            break
    assert len(seen) == 50 and seen[-1].startswith("echo 99 ")  # all read, step by step
    assert parsed == parse_transcript(path, "/w/app")


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _mutate(record: Any, path: list[Any], value: Any) -> Any:
    """`record` with the value at the nested position `path` (as far as it goes) replaced."""
    if not path or not isinstance(record, dict | list) or not record:
        return value
    key = path[0]
    if isinstance(record, dict):
        k = list(record)[key % len(record)]
        return {**record, k: _mutate(record[k], path[1:], value)}
    i = key % len(record)
    return [*record[:i], _mutate(record[i], path[1:], value), *record[i + 1 :]]


_LINES = [
    (path, line)
    for path in REAL
    if path.suffix == ".jsonl"
    for line in path.read_bytes().split(b"\n")[:200:7]
    if line.strip()
]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(_LINES),
    st.lists(st.integers(min_value=0, max_value=50), max_size=6),
    _JSON,
    st.sampled_from(["value", "bytes", "depth", "cut"]),
    st.binary(max_size=16),
)
def test_transcript_reading_is_total(
    line: tuple[Path, bytes], where: list[int], value: Any, how: str, junk: bytes
) -> None:
    """Any mutation of a real transcript line — a value of another type anywhere, raw bytes,
    nesting thousands deep, a cut — is read or skipped by every agent's reader, never raised."""
    path, raw = line
    if how == "value":
        mutated = json.dumps(_mutate(json.loads(raw), where, value)).encode()
    elif how == "bytes":
        cut = (where[0] if where else 0) * 7 % max(len(raw), 1)
        mutated = raw[:cut] + junk + raw[cut:]
    elif how == "depth":
        mutated = (
            json.dumps(_mutate(json.loads(raw), where, None))
            .encode()
            .replace(b"null", b"[" * 3000 + b"]" * 3000, 1)
        )
    else:
        mutated = raw[: len(raw) // 2]
    for reader in READERS.values():
        r = reader("/Users/user/repo")
        read_lines(r, json.dumps(json.loads(raw)).encode() + b"\n" + mutated)
        parsed = r.result()
        for name in ("files_modified", "commands_run", "key_decisions", "open_tasks", "requests"):
            assert all(isinstance(x, str) for x in getattr(parsed, name)), name
        json.dumps(r.state())  # the state a hook keeps stays plain data


def test_the_reader_state_survives_a_round_trip() -> None:
    r = Reader("/w")
    read_lines(r, (REAL[0]).read_bytes())
    again = Reader("/w", json.loads(json.dumps(r.state())))
    assert again.result() == r.result()


# --- terminal-safe output ------------------------------------------------------------------------

ESCAPES = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b]0;pwned\x07\x00\x9b"
ARG = ESCAPES.replace("\x00", "")  # (a command line cannot carry NUL)


def test_control_characters_are_shown_escaped_and_stored_exactly(tmp_path: Path) -> None:
    root = tmp_path / ".memory"
    Store(root).save(
        "dev",
        {"session_id": "s", "project_path": f"/w{ARG}", "open_tasks": [f"task {ESCAPES}"],
         "key_decisions": [ESCAPES], "git_branch": ESCAPES},
    )  # fmt: skip
    env = {**os.environ, "SESSIONMEM_USER": "dev", "SESSIONMEM_ROOT": str(root)}
    for argv in (["show", "s"], ["latest"], ["show", "s", "--format", "markdown"],
                 ["brief", "--project-path", f"/w{ARG}"]):  # fmt: skip
        run = subprocess.run(
            [*sessionmem_cmd(), *argv], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert run.returncode == 0, run.stderr
        assert not any(c in run.stdout for c in "\x1b\x07\x00\x9b"), argv
        assert "\\x1b]52;c;" in run.stdout, argv
    raw = subprocess.run(
        [*sessionmem_cmd(), "show", "s", "--json"], env=env, capture_output=True, text=True
    )
    assert json.loads(raw.stdout)["session_data"]["open_tasks"] == [f"task {ESCAPES}"]


def test_the_session_start_output_is_escaped(repo) -> None:
    repo, env = repo
    Store(repo / ".memory").save(
        "dev", {"session_id": "s", "project_path": str(repo), "open_tasks": [ESCAPES]}
    )
    run = run_hook({"session_id": "n", "cwd": str(repo), "hook_event_name": "SessionStart",
                    "source": "startup"}, repo, env)  # fmt: skip
    assert "## Open tasks\n- \\x1b]52;c;cm0gLXJmIH4=\\x07" in run.stdout
    assert (
        "\x1b" not in run.stdout
        and "\x1b" not in (repo / ".memory" / ".local" / "last-briefing.md").read_text()
    )


# --- the rule book: real dates -------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["2026-13-45", "0000-00-00", "2026-02-30", "1969-12-31",
                                 "2026-12-01T24:00:00Z", "２０２６-01-01"])  # fmt: skip
def test_impossible_dates_are_refused_by_search(store: Store, bad: str) -> None:
    store.save("alice", {"session_id": "s", "open_tasks": ["zeta"]})
    for name in ("since", "until"):
        with pytest.raises(InvalidInput) as err:
            store.search("alice", "zeta", **{name: bad})
        assert err.value.errors[0].field == name and "month 1-12" in str(err.value)
    assert store.search("alice", "zeta", since="2026-02-28", until="2099-12-31").items


# --- a shared server runs nothing against a path a client names ----------------------------------


def test_mcp_briefing_on_a_server_never_probes_a_named_path(tmp_path: Path, serve) -> None:
    from sessionmem.keys import KeyRing
    from test_mcp import _drive_http

    from helpers import git

    probed = new_repo(tmp_path / "elsewhere")  # some repository on the server's host
    (probed / "secret.txt").write_text("x\n")
    commit_all(probed, "one")
    first = git(probed, "rev-parse", "HEAD").strip()
    git(probed, "checkout", "-q", "-b", "hidden-branch-name")
    (probed / "secret.txt").write_text("y\n")
    commit_all(probed, "two")
    root = tmp_path / ".memory"
    store = Store(root)
    key = KeyRing(store.layout).create("alice")[1]
    store.save("alice", {"session_id": "s", "project_path": str(probed), "git_branch": "main",
                         "git_commit": first, "files_modified": ["secret.txt"]})  # fmt: skip
    server = serve(root)
    out = _drive_http(
        server.base + "/mcp",
        {"x-api-key": key},
        lambda s: s.call_tool("get_briefing", {"project_path": str(probed)}),
    )
    text = out.content[0].text
    assert text.startswith("# Session memory: s (version 1)")
    assert "Warning" not in text and "hidden-branch-name" not in text


# --- search: bounded cost, a budget, cancelled work, no removed text --------------------------


def _versions_with_word(store: Store, n: int) -> None:
    for i in range(n):
        store.save("alice", {"session_id": "s", "open_tasks": [f"zeta {i}" if i < n - 1 else "x"]})


def test_a_search_runs_its_query_once_whatever_it_skips(tmp_path: Path) -> None:
    store = Store(tmp_path / ".memory", durability="fast")
    _versions_with_word(store, 400)
    store.search("alice", "warmup")
    queries: list[str] = []
    db = store._search_index("alice")._db()  # this thread's connection
    db.set_trace_callback(queries.append)
    assert store.search("alice", "zeta", limit=1).items == []  # 399 matches, none live
    hit = store.search("alice", "zeta", all_versions=True, limit=1).items[0]
    assert 1 <= hit.version <= 399 and hit.snippet == f"[zeta] {hit.version - 1}"
    db.set_trace_callback(None)
    matches = [q for q in queries if "MATCH" in q and "snippet" not in q]
    assert len(matches) == 2, matches  # one per search (paging re-ran it 100 times)


def test_a_search_past_its_budget_names_q(tmp_path: Path, monkeypatch) -> None:
    store = Store(tmp_path / ".memory", durability="fast")
    _versions_with_word(store, 50)
    monkeypatch.setenv("SESSIONMEM_SEARCH_BUDGET", "0.000001")
    with pytest.raises(InvalidInput) as err:
        store.search("alice", "zeta")
    assert err.value.errors[0].field == "q" and "a search may take" in str(err.value)


def test_a_cancelled_search_stops(tmp_path: Path) -> None:
    import threading

    from sessionmem import StorageError

    store = Store(tmp_path / ".memory", durability="fast")
    _versions_with_word(store, 50)
    gone = threading.Event()
    gone.set()
    with pytest.raises(StorageError, match="cancelled"):
        store.search("alice", "zeta", cancel=gone)


def test_an_edit_in_place_at_the_same_size_leaves_no_old_text_findable(tmp_path: Path) -> None:
    root = tmp_path / ".memory"
    store = Store(root)
    store.save("alice", {"session_id": "s", "open_tasks": ["rotate the secret token"]})
    store.save("alice", {"session_id": "t", "open_tasks": ["other work"]})
    assert [h.session_id for h in store.search("alice", "secret").items] == ["s"]
    log = next((root / "log" / "alice").glob("*.jsonl"))
    raw = log.read_bytes()
    log.write_bytes(raw.replace(b"secret", b"public"))  # same size, same inode
    assert log.stat().st_size == len(raw)
    assert store.search("alice", "secret").items == []
    hit = store.search("alice", "public").items[0]
    assert hit.snippet == "rotate the [public] token"
    assert Store(root).search("alice", "secret").items == []  # a new process too


# --- serve --background and --stop never lie -----------------------------------------------------


def _serve(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*sessionmem_cmd(), "serve", "--root", str(root), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_background_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    from conftest import free_port

    port = free_port()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        run = _serve(tmp_path / ".memory", "--background", "--port", str(port))
    assert run.returncode == 1 and f"Port {port} on 127.0.0.1 is in use" in run.stderr
    assert not (tmp_path / ".memory" / ".local" / "serve.json").exists()


def test_two_background_starts_one_server(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from conftest import free_port

    root = tmp_path / ".memory"
    _serve(root, "--stop")  # (makes nothing: no server)
    Store(root)  # the folder, with its key made before the race
    from sessionmem.keys import KeyRing

    KeyRing(Store(root).layout).create("alice")
    ports = [free_port(), free_port()]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda p: _serve(root, "--background", "--port", str(p)), ports))
    ok = [r for r in runs if r.returncode == 0]
    assert len(ok) == 1, [r.stderr for r in runs]
    refused = next(r for r in runs if r.returncode != 0)
    assert "already serves" in refused.stderr or "is starting for" in refused.stderr
    info = json.loads((root / ".local" / "serve.json").read_text())
    stop = _serve(root, "--stop")
    assert stop.returncode == 0 and not _pid_alive(info["pid"])


def test_stop_waits_then_kills_a_server_that_does_not_stop(tmp_path: Path) -> None:
    import signal

    from conftest import free_port

    root = tmp_path / ".memory"
    run = _serve(root, "--background", "--port", str(free_port()))
    assert run.returncode == 0, run.stderr
    pid = json.loads((root / ".local" / "serve.json").read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)  # a server that will not act on SIGTERM (hung, or busy)
    stop = _serve(root, "--stop", env={"SESSIONMEM_STOP_GRACE": "1"})
    assert stop.returncode == 0, stop.stderr
    assert "with SIGKILL: it had not stopped 1 s after SIGTERM" in stop.stdout
    assert not _pid_alive(pid) and not (root / ".local" / "serve.json").exists()


def test_get_mcp_opens_no_endless_stream(tmp_path: Path, serve) -> None:
    """300 GET /mcp streams stayed open for good; now each is a quick 405 (the MCP transport
    allows it), and the server still answers."""
    import httpx

    from sessionmem.keys import KeyRing

    root = tmp_path / ".memory"
    key = KeyRing(Store(root).layout).create("alice")[1]
    server = serve(root)
    headers = {"x-api-key": key, "accept": "text/event-stream"}
    with httpx.Client(base_url=server.base, timeout=10) as http:
        answers = [http.get("/mcp", headers=headers) for _ in range(50)]
        assert {a.status_code for a in answers} == {405}
        assert answers[0].headers["allow"] == "POST, DELETE"
        assert "stateless" in answers[0].json()["detail"]
        assert http.get("/healthz").status_code == 200
        assert http.get("/mcp").status_code == 401  # a key first, as everywhere


# --- redaction patterns that cannot stall ----------------------------------------------------


def test_a_catastrophic_pattern_cannot_stall_a_save(tmp_path: Path) -> None:
    root = tmp_path / ".memory"
    root.mkdir()
    (root / "config.toml").write_text('[redact]\npatterns = ["(a+)+$", "ACME-[0-9]{8}"]\n')
    env = {**os.environ, "SESSIONMEM_USER": "dev", "SESSIONMEM_ROOT": str(root)}
    # 40 a's and a '!': 2^40 steps for a backtracking engine; RE2 is linear. (The subprocess
    # timeout only turns a hang into a failure; no time is asserted.)
    run = subprocess.run(
        [*sessionmem_cmd(), "save", "--session-id", "s", "--task", "a" * 40 + "!",
         "--task", "send ACME-12345678 and aaaa"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    tasks = Store(root).get("dev", "s").open_tasks
    assert tasks == ["a" * 40 + "!", "send [REDACTED] and [REDACTED]"]


@pytest.mark.parametrize("pattern", [r"(a)\\1", r"(?<=x)secret", "(unclosed"])
def test_a_pattern_re2_cannot_run_is_refused_in_one_line(tmp_path: Path, pattern: str) -> None:
    root = tmp_path / ".memory"
    root.mkdir()
    (root / "config.toml").write_text(f'[redact]\npatterns = ["{pattern}"]\n')
    env = {**os.environ, "SESSIONMEM_USER": "dev", "SESSIONMEM_ROOT": str(root)}
    run = subprocess.run(
        [*sessionmem_cmd(), "save", "--session-id", "s", "--task", "t"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    shown = pattern.replace("\\\\", "\\")
    assert "redact.patterns has a pattern that cannot be used" in run.stderr
    assert repr(shown) in run.stderr or shown in run.stderr


# --- installers respect the user's file ---------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "where"),
    [("claude-code", ".claude/settings.json"), ("codex", ".codex/hooks.json"),
     ("gemini", ".gemini/settings.json"), ("cursor", ".cursor/hooks.json")],
)  # fmt: skip
def test_installers_write_through_links_and_keep_modes_and_values(
    repo, tmp_path: Path, agent: str, where: str
) -> None:
    repo, env = repo
    secret = tmp_path / "private" / "settings.json"
    secret.parent.mkdir()
    original = (
        '{"apiKeyHelper": "echo sk-test", "big": 18446744073709551616, '
        '"pi": 3.14159265358979323846264338327950288, "tiny": 1e-400, "list": [1.0, -0]}'
    )
    secret.write_text(original)
    secret.chmod(0o600)
    link = repo / where
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(secret)
    run = subprocess.run(
        [*sessionmem_cmd(), "install", agent], cwd=repo, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert f"{link} is a link: its target {secret} is what changes." in run.stdout
    assert link.is_symlink() and (secret.stat().st_mode & 0o777) == 0o600
    text = secret.read_text()
    for literal in ("18446744073709551616", "3.14159265358979323846264338327950288", "1e-400",
                    "1.0", "-0", '"echo sk-test"'):  # fmt: skip
        assert literal in text
    assert "sessionmem" in text
    # and back: the user's values are still all there, byte for byte
    undo = subprocess.run(
        [*sessionmem_cmd(), "install", agent, "--uninstall"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    left = json.loads(secret.read_text())
    if agent == "cursor":
        assert left.pop("version") == 1  # (Cursor's file needs it; it stays)
    assert undo.returncode == 0 and left == json.loads(original)


def test_installers_refuse_duplicate_keys_and_read_only_files(repo) -> None:
    repo, env = repo
    settings = repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text('{"model": "a", "model": "b"}')
    run = subprocess.run(
        [*sessionmem_cmd(), "install", "claude-code"], cwd=repo, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert run.returncode == 1 and "has the key 'model' twice" in run.stderr
    assert settings.read_text() == '{"model": "a", "model": "b"}'
    settings.write_text('{"model": "a"}')
    settings.chmod(0o444)
    run = subprocess.run(
        [*sessionmem_cmd(), "install", "claude-code"], cwd=repo, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert run.returncode == 1 and "is read-only" in run.stderr
    assert settings.read_text() == '{"model": "a"}' and (settings.stat().st_mode & 0o777) == 0o444


def test_a_slow_read_is_cancelled_when_its_client_goes_away() -> None:
    """The HTTP side of a search's cancel: the client disconnects, the event is set, the work
    stops (an ASGI request whose client leaves after its headers)."""
    import threading

    import anyio
    from starlette.requests import Request

    from sessionmem.http.threads import slow_read

    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await anyio.sleep(0.05)
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []}, receive)
    cancel = threading.Event()

    def work() -> str:
        return "stopped" if cancel.wait(60) else "ran on for nobody"

    assert anyio.run(slow_read, request, work, cancel) == "stopped"
