"""The server under hostile clients and a broken machine: bounded memory, closed idle
connections, a clear 503 for every failure of the machine, keys that are never wiped, every input
checked. Real `sessionmem serve` processes where sockets, memory and limits matter."""

from __future__ import annotations

import base64
import errno
import json
import os
import resource
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from sessionmem import Store
from sessionmem.keys import KeyRing
from sessionmem.layout import Layout

from conftest import free_port, run_cli, sessionmem_cmd, url

USER = "alice"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _key(root: Path) -> str:
    return KeyRing(Layout(root)).create(USER)[1]


def _started(cmd: list[str], **popen) -> tuple[subprocess.Popen, str]:  # type: ignore[no-untyped-def,type-arg]
    """`sessionmem serve ...` on a free port, once it answers: (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([*cmd, "--port", str(port)], **popen)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, base


# --- memory ----------------------------------------------------------------------------------

RSS_GROWTH_LIMIT_MB = 120  # docs/decisions.md, "Bounds"


def tiny_values_body(i: int) -> bytes:
    """~1 MiB made of ~350,000 tiny values: what blew a server up before it had bounds."""
    return json.dumps({"session_id": f"bomb{i}", "metadata": {"v": [0] * 340_000}}).encode()


def at_the_limits_body(i: int) -> dict:
    """The biggest snapshot the bounds accept: four full lists and 9,000 extra values."""
    return {
        "session_id": f"full{i}",
        "project_path": "/p",
        "open_tasks": [f"task {n:07d}" for n in range(10_000)],
        "files_modified": [f"f{n:06d}.py" for n in range(10_000)],
        "commands_run": [f"c {n:05d}" for n in range(10_000)],
        "key_decisions": [f"d{n:05d}" for n in range(10_000)],
        "extra": list(range(9_000)),
    }


@pytest.mark.slow
def test_memory_stays_bounded_whatever_the_bodies(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / ".memory"
    key = _key(root)
    server = serve(root)
    h = {"x-api-key": key, "content-type": "application/json"}
    try:
        for _ in range(3):  # warm up: the first requests import and allocate what every one uses
            httpx.get(server.base + url("/sessions"), headers=h)
        before = rss_mb(server.proc.pid)
        for i in range(20):
            r = httpx.post(server.base + url("/session"), content=tiny_values_body(i), headers=h)
            assert r.status_code == 422 and "10000 JSON values" in r.text, r.text[:300]
            r = httpx.post(server.base + url("/session"), json=at_the_limits_body(i), headers=h,
                           timeout=30)  # fmt: skip
            assert r.status_code == 201, r.text[:300]
            assert httpx.get(server.base + url(f"/session/full{i}"), headers=h).status_code == 200
        listing = httpx.get(server.base + url("/sessions"), params={"project_path": "/p"},
                            headers=h, timeout=30)  # fmt: skip
        assert listing.status_code == 200 and len(listing.json()["items"]) == 20
        grown = rss_mb(server.proc.pid) - before
        print(f"\nRSS growth after 40 big POSTs, 20 GETs and a filtered listing: {grown:.0f} MB")
        assert grown < RSS_GROWTH_LIMIT_MB
    finally:
        server.stop()
    again = serve(root)  # a restart: the filtered listing parses each head once, keeps little
    try:
        start = rss_mb(again.proc.pid)
        t = time.monotonic()
        listing = httpx.get(again.base + url("/sessions"), params={"project_path": "/p"},
                            headers=h, timeout=60)  # fmt: skip
        took = time.monotonic() - t
        assert listing.status_code == 200 and len(listing.json()["items"]) == 20
        grown = rss_mb(again.proc.pid) - start
        print(f"after a restart, the filtered listing: {took:.2f} s, RSS +{grown:.0f} MB")
        assert grown < RSS_GROWTH_LIMIT_MB
    finally:
        again.stop()


# --- connections -----------------------------------------------------------------------------


def test_half_open_connections_are_closed_within_the_timeout(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / ".memory"
    server = serve(root, "--header-timeout", "2", "--body-timeout", "2")
    try:
        socks = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            socks.append(s)
        started = time.monotonic()
        assert httpx.get(server.base + "/healthz").status_code == 200  # others are served
        answered = 0
        for s in socks:
            s.settimeout(15)
            got = s.recv(200)
            answered += got.startswith(b"HTTP/1.1 408") or got == b""
            s.close()
        waited = time.monotonic() - started
        assert answered == 200 and waited < 10, (answered, waited)
        # a body that stalls half-way is closed too
        key = _key(root)
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(
            b"POST " + url("/session").encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"content-type: application/json\r\ncontent-length: 100\r\n"
            b"x-api-key: " + key.encode() + b'\r\n\r\n{"session_id": "sl'
        )
        s.settimeout(15)
        started = time.monotonic()
        got = s.recv(200)
        assert got.startswith(b"HTTP/1.1 408") or got == b"", got
        assert time.monotonic() - started < 10
        s.close()
    finally:
        server.stop()


def _limit_descriptors(n: int):  # type: ignore[no-untyped-def]
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("cap", ["default", "above the limit"])
def test_out_of_descriptors_answers_503_and_recovers(tmp_path: Path, cap: str) -> None:
    """A server limited to 64 descriptors, flooded with connections. With the default cap the
    flood meets the connection limit; with a cap above the descriptor limit a save that must
    open a log file (another user's) meets "too many open files" — a log already written stays
    open, so its saves go on. Either way: JSON 503s with Retry-After, no log flood, and it
    recovers once the guard has closed what the flood left open."""
    root = tmp_path / ".memory"
    key = _key(root)
    other = KeyRing(Layout(root)).create("bob")[1]
    Store(root).append(USER, {"session_id": "before"})
    log = tmp_path / "serve.log"
    cmd = [*sessionmem_cmd(), "serve", "--root", str(root), "--header-timeout", "3",
           "--keep-alive-timeout", "60", "--log-level", "info"]  # fmt: skip
    if cap != "default":
        cmd += ["--max-connections", "500"]
    with open(log, "wb") as out:
        proc, base = _started(cmd, stdout=out, stderr=out, preexec_fn=_limit_descriptors(64))
    number = int(base.rsplit(":", 1)[1])
    flood: list[socket.socket] = []
    try:
        h = {"x-api-key": key}
        with httpx.Client(base_url=base, headers=h, timeout=10) as good:  # one kept-alive
            assert good.post(url("/session"), json={"session_id": "s0"}).status_code == 201
            for _ in range(80):  # more than the descriptors left
                try:
                    flood.append(socket.create_connection(("127.0.0.1", number), timeout=1))
                except OSError:
                    break
            time.sleep(1.0)
            answers = [good.post(url("/session"), json={"session_id": f"s{i}"}) for i in range(3)]
            if cap != "default":
                answers += [
                    good.post(
                        url("/session"), json={"session_id": f"b{i}"}, headers={"x-api-key": other}
                    )
                    for i in range(3)
                ]
            refused = [a for a in answers if a.status_code == 503]
            assert refused, [a.status_code for a in answers]
            why = "connection limit" if cap == "default" else "Too many open files"
            for a in refused:
                assert a.headers["retry-after"] == "1"
                assert why in a.json()["detail"], a.text
            assert all(a.status_code in (201, 503) for a in answers)
        for s in flood:
            s.close()
        flood.clear()
        time.sleep(4)  # the guard closes what the flood left half-open
        with httpx.Client(base_url=base, headers=h, timeout=10) as fresh:
            recovered = fresh.post(url("/session"), json={"session_id": "after"})
            assert recovered.status_code == 201, recovered.text
            assert fresh.get(url("/session/before")).status_code == 200
    finally:
        for s in flood:
            s.close()
        proc.terminate()
        proc.wait(10)
    text = log.read_text(errors="replace")
    assert len(text) < 200_000, "the log was flooded"
    assert text.count("out of system resource") <= 10


# --- the machine's failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", [errno.EROFS, errno.EACCES, errno.EMFILE, errno.ENFILE, errno.ENOSPC, errno.EIO]
)
def test_every_failure_to_open_is_a_503_naming_it(
    store: Store,
    http,
    monkeypatch: pytest.MonkeyPatch,
    code: int,  # type: ignore[no-untyped-def]
) -> None:
    # Stored by another process (the server keeps its log file open once it wrote it).
    Store(store.root).save("alice", {"session_id": "kept"})
    real_open = os.open
    log = str(store.root / "log")

    def failing(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(log) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing)
    for response in (
        http.post(url("/session"), json={"session_id": "new"}),
        http.delete(url("/session/kept")),
    ):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        detail = response.json()["detail"]
        assert os.strerror(code) in detail and "Nothing was stored" in detail
    monkeypatch.setattr(os, "open", real_open)
    assert http.get(url("/session/kept")).status_code == 200  # nothing was lost or damaged
    assert http.get(url("/session/new")).status_code == 404


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_folder_that_cannot_be_written() -> None:
    """Owned by another user: the CLI says so in one line, the server answers 503."""
    import tempfile

    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if subprocess.run([*as_nobody, *sessionmem_cmd(), "--version"], capture_output=True).returncode:
        pytest.skip("user nobody cannot run this checkout's sessionmem")
    home = Path(tempfile.mkdtemp(prefix="sessionmem-ro-", dir="/tmp"))  # nobody can reach it
    home.chmod(0o755)
    root = home / ".memory"
    key = _key(root)
    Store(root).append(USER, {"session_id": "kept"})
    env = {**os.environ, "SESSIONMEM_USER": USER, "HOME": str(home)}
    saved = subprocess.run(
        [*as_nobody, *sessionmem_cmd(), "save", "--session-id", "x", "--root", str(root)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert saved.returncode == 1 and saved.stdout == "", saved
    assert saved.stderr.count("\n") == 1 and saved.stderr.startswith("Error: Could not ")
    assert "Permission denied" in saved.stderr and "Traceback" not in saved.stderr
    made = subprocess.run(
        [*as_nobody, *sessionmem_cmd(), "keys", "create", "bob", "--root", str(root)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert (
        made.returncode == 1
        and made.stderr.startswith("Error: ")
        and "Traceback" not in made.stderr
    )
    # the server, able to read but not to write the logs (its own .local/ is its)
    local = root / ".local"
    for path in [local, *local.rglob("*")]:
        os.chown(path, 65534, 65534)
    server, base = _started(
        [*as_nobody, *sessionmem_cmd(), "serve", "--root", str(root), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        h = {"x-api-key": key}
        assert httpx.get(base + url("/session/kept"), headers=h).status_code == 200
        r = httpx.post(base + url("/session"), json={"session_id": "y"}, headers=h)
        assert r.status_code == 503 and "Permission denied" in r.json()["detail"], r.text
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    unreachable = subprocess.run(
        [*as_nobody, *sessionmem_cmd(), "latest", "--root", "/root/.memory"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert unreachable.returncode == 1 and unreachable.stderr.count("\n") == 1
    assert "Permission denied" in unreachable.stderr and "Traceback" not in unreachable.stderr


# --- keys ------------------------------------------------------------------------------------

DAMAGED = [
    b"{not json",
    b'{"keys": null}',
    b"[]",
    b'{"keys": [{"sha256": "abc", "user": "alice"}]}',
    b'{"keys": [{"sha256": "' + b"a" * 64 + b'"}]}',
    b'{"keys": [{"sha256": "' + b"a" * 64 + b'", "user": "../x"}]}',
    b"",
]


@pytest.mark.parametrize("raw", DAMAGED, ids=[r[:24].decode() or "empty" for r in DAMAGED])
def test_a_damaged_key_file_is_never_overwritten(tmp_path: Path, raw: bytes) -> None:
    root = tmp_path / ".memory"
    _key(root)
    path = root / ".local" / "keys.json"
    path.write_bytes(raw)
    for args in (["keys", "create", "bob"], ["keys", "revoke", "abcdef12"], ["keys", "list"],
                 ["serve", "--port", "1"]):  # fmt: skip
        code, out, err = run_cli(*args, "--root", str(root))
        assert code == 1 and out == "", (args, out, err)
        assert err.startswith(f"Error: The key file {path} is damaged ("), err
        assert path.read_bytes() == raw


def test_a_running_server_keeps_its_last_good_keys(
    store: Store,
    http,
    keys: dict[str, str],
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    from sessionmem.keys import RECHECK_SECONDS

    assert http.get(url("/sessions")).status_code == 200
    path = store.root / ".local" / "keys.json"
    path.write_bytes(b'{"keys": [{"sha256": "x"}]}')
    time.sleep(RECHECK_SECONDS + 0.1)
    for _ in range(3):
        assert http.get(url("/sessions")).status_code == 200  # alice's key still works
    assert sum("is damaged" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert path.read_bytes() == b'{"keys": [{"sha256": "x"}]}'


# --- query input -----------------------------------------------------------------------------


def _forged(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/sessions", {"cursor": _forged(["s", ["a", 1]])}, "cursor"),
        ("/sessions", {"cursor": _forged(["s", [1, "w", 2]])}, "cursor"),
        ("/sessions", {"cursor": _forged(["s", {"x": 1}])}, "cursor"),
        ("/session/s1/history", {"cursor": _forged(["v", "2"])}, "cursor"),
        ("/session/s1/history", {"cursor": _forged(["v", True])}, "cursor"),
        ("/session/s1/diff", {"from": "\u00b2"}, "from"),
        ("/session/s1/diff", {"to": "\u2460"}, "to"),
        ("/session/s1/diff", {"from": "9" * 4301}, "from"),
        ("/session/s1", {"version": "\u00b2"}, "version"),
        ("/session/s1", {"snapshot_id": "xyz"}, "snapshot_id"),
    ],
)
def test_forged_query_input_is_a_422_naming_it(http, path: str, params: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    http.post(url("/session"), json={"session_id": "s1"})
    http.post(url("/session"), json={"session_id": "s1"})
    r = http.get(url(path), params=params)
    assert r.status_code == 422, r.text
    assert any(field in (d.get("field") or "") for d in r.json()["detail"]), r.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"session_id": "n", "metadata": {"big": 18446744073709551616}}',
        b'{"session_id": "n", "x": [1, -99999999999999999999]}',
        b'{"session_id": "n", "metadata": {"big": 9223372036854775808}}',
    ],
)
def test_integers_outside_64_bits_are_refused_not_changed(http, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    r = http.post(url("/session"), content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "signed 64-bit range" in r.text, r.text
    ok = http.post(url("/session"), json={"session_id": "n", "metadata": {"max": 2**63 - 1}})
    assert ok.status_code == 201
    assert http.get(url("/session/n")).json()["session_data"]["metadata"]["max"] == 2**63 - 1
