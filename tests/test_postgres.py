"""The PostgreSQL engine with real replicas (docs/decisions.md, "PostgreSQL"): two `serve`
processes on one database, the schema's upgrade and refusals, and a database that cannot be
reached. The Store contract and every surface run on this engine too (`conftest.ENGINES`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from sessionmem import Client, NotFound, StorageError, Store
from sessionmem.pg import schema
from sessionmem.pg.engine import PgStore
from sessionmem.verify import verify

from conftest import REPO, Postgres, Server, run_cli, sessionmem_cmd


def _replica(serve: type[Server], place: Path, url: str) -> Server:
    place.mkdir(parents=True, exist_ok=True)
    return serve(place, "--database", url)


def test_two_replicas_on_one_database(tmp_path: Path, serve: type[Server]) -> None:
    url = Postgres.database(tmp_path)
    code, out, err = run_cli("keys", "create", "alice", "--database", url)
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    one = _replica(serve, tmp_path / "one", url)
    two = _replica(serve, tmp_path / "two", url)
    with Client(one.base, key) as a, Client(two.base, key) as b:
        first = a.save("s", open_tasks=["written through one"])
        assert b.get("s") == first  # read-your-writes across replicas, byte for byte
        assert b.latest().snapshot_id == first.snapshot_id
        # The same Idempotency-Key through the other replica: the first result, not a copy.
        kept = a.save("k", idempotency_key="retry-1", open_tasks=["once"])
        assert b.save("k", idempotency_key="retry-1", open_tasks=["once"]) == kept
        assert b.get("k").version == 1

        # Concurrent writers on one session through both replicas: versions 1..N exactly once.
        errors: list[BaseException] = []

        def writer(client: Client, n: int) -> None:
            try:
                for i in range(25):
                    client.save("busy", open_tasks=[f"{n}-{i}"])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        clients = [Client(r.base, key) for r in (one, two, one, two)]
        threads = [threading.Thread(target=writer, args=(c, n)) for n, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
        assert not errors, errors
        items = a.history("busy", limit=1000).items
        assert sorted(i.version for i in items) == list(range(1, 101))
        written = {b.get("busy", version=v).session_data["open_tasks"][0] for v in range(1, 101)}
        assert written == {f"{n}-{i}" for n in range(4) for i in range(25)}

        assert a.delete("s") == 1
        with pytest.raises(NotFound):
            b.get("s")
        assert b.forget("k")["events"] == 1
        with pytest.raises(NotFound):
            a.get("k")
    # The MCP endpoint of a replica answers from the database too.
    answer = httpx.post(
        f"{two.base}/mcp",
        headers={"x-api-key": key, "accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text


def test_the_snapshot_bytes_are_the_same_on_both_engines(tmp_path: Path) -> None:
    files = Store(tmp_path / ".memory")
    db = PgStore(Postgres.database(tmp_path))
    body = {
        "session_id": "s",
        "snapshot_id": "01a24e00-0000-7000-8000-000000000001",
        "open_tasks": ["ü", "b"],
        "metadata": {"agent": "codex", "n": 1.5},
        "zeta": [1, {}],
    }
    one, two = files.save("alice", body), db.save("alice", body)
    # Byte for byte, but for the time each was stored.
    assert one.json().replace(one.created_at.encode(), b"T") == two.json().replace(
        two.created_at.encode(), b"T"
    )
    assert db.get("alice", "s").json() == two.json()
    assert (
        files.history("alice", "s").view()["items"][0]["counts"]
        == (db.history("alice", "s").view()["items"][0]["counts"])
    )
    db.close()


def test_the_schema_is_made_and_checked_explicitly(tmp_path: Path) -> None:
    url = Postgres.database(tmp_path)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE sessionmem_meta, events, heads, idempotency, api_keys, erased")
        conn.execute("DROP SEQUENCE sessionmem_seq")
    with pytest.raises(StorageError, match="holds no sessionmem schema: run `sessionmem db up"):
        PgStore(url)
    code, out, err = run_cli("latest", "--database", url, "--user", "alice")
    assert code == 1 and "sessionmem db upgrade" in err and "Traceback" not in err
    code, out, err = run_cli("db", "upgrade", "--database", url)
    assert (code, out) == (0, f"Upgraded the database to schema version {schema.SCHEMA_VERSION}.\n")
    code, out, _ = run_cli("db", "upgrade", "--database", url)
    assert "already" in out
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE sessionmem_meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(StorageError, match="schema version 99, newer than this sessionmem's"):
        PgStore(url)


def test_a_database_that_cannot_be_reached_is_one_clear_line(tmp_path: Path) -> None:
    url = f"postgresql://postgres@/postgres?host={tmp_path}&port=1"
    done = subprocess.run(
        [*sessionmem_cmd(), "serve", "--database", url, "--port", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Could not connect to the database" in lines[0], done.stderr


def _own_cluster() -> tuple[str, str]:
    """A cluster of this test's own (it is restarted): (URL, its folder)."""
    out = subprocess.run([str(REPO / "scripts" / "postgres")], capture_output=True, text=True,
                         timeout=600, check=True)  # fmt: skip
    url = out.stdout.strip()
    with psycopg.connect(url, autocommit=True) as conn:
        schema.upgrade(conn)
    return url, url.split("host=")[1].split("&")[0]


def _pg_ctl(folder: str, *args: str) -> None:
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    cmd = [str(bin_dir / "pg_ctl"), "-D", f"{folder}/data", "-w", *args]
    if os.getuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _stream(bases: list[str], key: str, session: str, count: int, log: dict) -> None:
    """POST `count` snapshots with an Idempotency-Key each, retrying every failure (a 503, a
    refused or cut connection) with the same key on the next replica until one answers 201."""
    with httpx.Client(timeout=10) as http:
        for i in range(count):
            idem = f"{session}-{i}"
            for attempt in range(600):
                base = bases[(i + attempt) % len(bases)]
                try:
                    r = http.post(f"{base}/api/v1/public/memory/v2/session",
                                  headers={"x-api-key": key, "idempotency-key": idem},
                                  json={"session_id": session, "open_tasks": [idem]})  # fmt: skip
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                if r.status_code == 201:
                    log.setdefault(session, []).append((idem, r.json()["snapshot_id"]))
                    break
                assert r.status_code == 503, r.text
                assert r.headers.get("retry-after") == "1"
                log.setdefault("503", []).append(idem)
                time.sleep(0.05)
            else:
                raise AssertionError(f"{idem} never stored")


def _once_acknowledged(log: dict, sessions: list[str], n: int) -> int:
    """Wait until the streams have `n` snapshots acknowledged; how many they have then."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = sum(len(log.get(s, [])) for s in sessions)
        if done >= n:
            return done
        time.sleep(0.005)
    raise AssertionError(f"the streams did not reach {n} acknowledged snapshots")


def _exactly_once(url: str, log: dict, sessions: list[str], count: int) -> None:
    db = PgStore(url)
    for session in sessions:
        acked = dict(log[session])
        assert len(acked) == count  # every request acknowledged
        items = db.history("alice", session, limit=1000).items
        stored = [db.get("alice", session, version=i.version).session_data["open_tasks"][0]
                  for i in items]  # fmt: skip
        assert sorted(stored) == sorted(acked), session  # each once: no copy, no loss
        assert sorted(i.snapshot_id for i in items) == sorted(acked.values())
    db.close()


@pytest.mark.slow
def test_a_database_restart_mid_stream_loses_nothing(tmp_path: Path, serve: type[Server]) -> None:
    url, folder = _own_cluster()
    try:
        key = PgStore(url).keys().create("alice")[1]
        replica = _replica(serve, tmp_path / "r", url)
        log: dict = {}
        sessions = [f"s{n}" for n in range(4)]
        threads = [threading.Thread(target=_stream, args=([replica.base], key, s, 150, log))
                   for s in sessions]  # fmt: skip
        for t in threads:
            t.start()
        at = _once_acknowledged(log, sessions, 30)
        _pg_ctl(folder, "-m", "fast", "-l", f"{folder}/pg.log", "restart")
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads)
        assert at < 4 * 150  # the restart came mid-stream
        _exactly_once(url, log, sessions, 150)
        print(f"restart after {at} of 600 acknowledged: 600 stored once; "
              f"{len(log.get('503', []))} answers were 503")
        assert replica.proc.poll() is None  # the same process serves on: no restart needed
    finally:
        subprocess.run([str(REPO / "scripts" / "postgres"), "stop", folder], check=False)


@pytest.mark.slow
def test_sigkill_of_a_replica_mid_stream(tmp_path: Path, serve: type[Server]) -> None:
    url = Postgres.database(tmp_path)
    key = PgStore(url).keys().create("alice")[1]
    one, two = _replica(serve, tmp_path / "one", url), _replica(serve, tmp_path / "two", url)
    log: dict = {}
    sessions = [f"c{n}" for n in range(8)]
    threads = [threading.Thread(target=_stream, args=([one.base, two.base], key, s, 100, log))
               for s in sessions]  # fmt: skip
    for t in threads:
        t.start()
    at = _once_acknowledged(log, sessions, 60)
    one.proc.send_signal(signal.SIGKILL)
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads)
    assert at < 8 * 100  # the kill came mid-stream
    _exactly_once(url, log, sessions, 100)
    print(f"SIGKILL after {at} of 800 acknowledged: 800 stored once")


def test_copy_folder_to_database_and_back_byte_for_byte(tmp_path: Path) -> None:
    first = tmp_path / "first" / ".memory"
    store = Store(first)
    for i in range(3):
        store.save("alice", {"session_id": "a", "open_tasks": [f"a{i}"], "metadata": {"i": i}})
    store.save("alice", {"session_id": "gone", "open_tasks": ["x"]})
    store.delete("alice", "gone")
    store.save("alice", {"session_id": "gone", "open_tasks": ["after the tombstone"]})
    store.save("bob", {"session_id": "b", "key_decisions": ["ü"]}, idempotency_key="k1")
    store.save("alice", {"session_id": "f", "open_tasks": ["forget me"]})
    store.forget("alice", "f")
    url = Postgres.database(tmp_path)
    back = tmp_path / "back" / ".memory"

    code, out, err = run_cli("copy", str(first), url)
    assert code == 0, err
    assert out.startswith("Copied 7 events of 2 users and 1 erase record (what ")
    code, out, _ = run_cli("copy", str(first), url)
    assert out.startswith("Copied 0 events of 2 users and 0 erase records")
    code, out, err = run_cli("copy", url, str(back))
    assert code == 0 and out.startswith("Copied 7 events of 2 users and 1 erase record"), err
    code, out, _ = run_cli("copy", url, str(back))
    assert out.startswith("Copied 0 events")

    db, again = PgStore(url), Store(back)
    for engine in (db, again):
        for user in ("alice", "bob"):
            theirs = store.sessions(user).view()
            assert engine.sessions(user).view()["items"] == theirs["items"]
            for s in theirs["items"]:
                sid = s["session_id"]
                for v in range(1, s["version"] + 1):
                    assert engine.get(user, sid, version=v).json() == (
                        store.get(user, sid, version=v).json()
                    )
    # The same lines, writer by writer, and the idempotency key still answers the first result.
    for path in (first / "log").rglob("*.jsonl"):
        assert (back / path.relative_to(first)).read_bytes() == path.read_bytes()
    assert db.save("bob", {"session_id": "b", "key_decisions": ["ü"]}, idempotency_key="k1") == (
        store.get("bob", "b")
    )
    assert not verify(back).findings
    db.close()


def test_forget_forget_text_and_prune_on_the_database(tmp_path: Path) -> None:
    url = Postgres.database(tmp_path)
    db = PgStore(url)
    secret = "bluebird-launch-4471"  # (not credential-shaped: the patterns let it through)
    for i in range(5):
        db.save("alice", {"session_id": "long", "open_tasks": [f"step {i}"]})
    db.save("alice", {"session_id": "dead", "open_tasks": ["x"]})
    db.save("alice", {"session_id": "dead", "open_tasks": ["y"]})
    db.delete("alice", "dead")
    db.save("alice", {"session_id": "leak", "commands_run": [f"export KEY={secret}"]},
            idempotency_key="k")  # fmt: skip
    db.save("bob", {"session_id": "b", "key_decisions": [f"rotate {secret}"]})

    code, out, err = run_cli("forget", "--text", "-", "--database", url, input=secret + "\n")
    assert code == 0 and "Replaced the string in 2 events" in out, err
    assert db.get("alice", "leak").session_data["commands_run"] == ["export KEY=[REDACTED]"]
    assert db.get("bob", "b").session_data["key_decisions"] == ["rotate [REDACTED]"]
    assert db.search("alice", "redacted").items[0].session_id == "leak"
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT line FROM events").fetchall()
        assert not any(secret.encode() in bytes(r[0]) for r in rows)
        records = [r[0] for r in conn.execute("SELECT record FROM erased").fetchall()]
    assert {r["why"] for r in records} == {"forget-text"}
    assert all(secret not in json.dumps(r) for r in records)

    assert db.prune("alice", keep_versions=2).events == 3  # long loses its 3 oldest
    assert [i.version for i in db.history("alice", "long").items] == [2, 1]
    assert db.get("alice", "long").session_data["open_tasks"] == ["step 4"]
    assert db.get("alice", "long", version=1).session_data["open_tasks"] == ["step 3"]
    with pytest.raises(NotFound):
        db.get("alice", "dead")  # the tombstone stays
    db.save("alice", {"session_id": "long", "open_tasks": ["step 5"]})
    assert db.get("alice", "long").version == 3

    assert db.forget("alice", "long").events == 3
    with pytest.raises(NotFound):
        db.get("alice", "long")
    assert not db.search("alice", "step").items
    # the erase records travel with `copy`, and a folder reads them
    folder = tmp_path / "out" / ".memory"
    assert run_cli("copy", url, str(folder))[0] == 0
    with pytest.raises(NotFound):
        Store(folder).get("alice", "long")
    assert not verify(folder).findings
    db.close()


def test_a_wrong_database_or_target_is_one_clear_line(tmp_path: Path) -> None:
    for argv in (["latest", "--database", "not a url"], ["copy", "postgres://x y", str(tmp_path)],
                 ["keys", "list", "--database", "nope"]):  # fmt: skip
        code, _, err = run_cli(*argv)
        assert code == 1 and "database must be a postgresql:// URL" in err, (argv, err)
    Store(tmp_path / "m" / ".memory").save("alice", {"session_id": "s"})
    (tmp_path / "a-file").write_text("x")
    code, _, err = run_cli("copy", str(tmp_path / "m" / ".memory"), str(tmp_path / "a-file"))
    assert code == 1 and "it is a file, not a memory folder" in err
    code, _, err = run_cli("copy", str(tmp_path / "nowhere"), str(tmp_path / "b"))
    assert code == 1 and "No memory folder at" in err
    code, _, err = run_cli("db", "upgrade")
    assert code == 2 and "db upgrade needs --database URL" in err


def _until(check: Any, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_replicas_hear_each_other_and_keep_hearing(tmp_path: Path) -> None:
    """LISTEN/NOTIFY (`pg.follow`): a write through one store wakes the other's listeners with
    the user's name; a revoked key stops working there; a lost LISTEN connection comes back and
    says that anything may have changed (None)."""
    url = Postgres.database(tmp_path)
    one, two = PgStore(url), PgStore(url)
    heard: list[str | None] = []
    two.changes.subscribe(heard.append)
    follower = two.follower()
    follower.start()
    try:
        assert follower.listening.wait(10)  # type: ignore[attr-defined]
        assert _until(lambda: None in heard)  # the first connection: anything may have changed
        heard.clear()
        one.save("alice", {"session_id": "s", "open_tasks": ["heard"]})
        assert _until(lambda: "alice" in heard), heard
        assert "bob" not in heard

        _info, key = one.keys().create("bob")
        assert two.keys().authenticate(key) == "bob"  # remembered by two from now on
        one.keys().revoke(key)
        assert _until(lambda: two.keys().authenticate(key) is None)

        with psycopg.connect(url, autocommit=True) as admin:  # the LISTEN connection dies
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> "
                "pg_backend_pid() AND query LIKE 'LISTEN%%'"
            )
        heard.clear()
        assert _until(lambda: None in heard)  # connected again, and said so
        one.save("carol", {"session_id": "s", "open_tasks": ["heard again"]})
        assert _until(lambda: "carol" in heard), heard
    finally:
        follower.stop()
        one.close()
        two.close()


def test_the_hot_reads_of_one_turn_share_a_round_trip_and_see_every_write(
    tmp_path: Path,
) -> None:
    """`answer_async` (GET latest / by id on a server): many at once, each its own answer — a
    session, the user's latest, a missing session's 404 — and a write acknowledged through
    another store is read at once (each batch starts after its reads arrived)."""
    import asyncio

    url = Postgres.database(tmp_path)
    one, two = PgStore(url), PgStore(url)
    try:
        for n in range(20):
            one.save("alice", {"session_id": f"s{n}", "open_tasks": [f"task {n}"]})

        async def many() -> list[Any]:
            asks = [two.answer_async("alice", f"s{n % 20}") for n in range(60)]
            asks += [two.answer_async("alice", "latest"), two.answer_async("alice", "nope")]
            return await asyncio.gather(*asks, return_exceptions=True)

        answers = asyncio.run(many())
        for n, raw in enumerate(answers[:60]):
            assert raw == one.get("alice", f"s{n % 20}").json()
        assert answers[60] == one.latest("alice").json()
        assert isinstance(answers[61], NotFound)

        async def read_your_writes() -> None:
            for n in range(30):
                saved = await asyncio.to_thread(
                    one.save, "alice", {"session_id": "rw", "open_tasks": [f"v{n}"]}
                )
                got, latest = await asyncio.gather(
                    two.answer_async("alice", "rw"), two.answer_async("alice", "latest")
                )
                assert got == saved.json() == latest

        asyncio.run(read_your_writes())
        with pytest.raises(NotFound):
            asyncio.run(two.answer_async("nobody", "latest"))
    finally:
        one.close()
        two.close()
