"""`sessionmem serve` as a real process on a real socket, driven by `sessionmem.Client`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sessionmem import Client, ClientError
from sessionmem.keys import KeyRing
from sessionmem.layout import Layout


def test_save_then_restore_through_a_real_server(tmp_path: Path, serve) -> None:
    root = tmp_path / ".memory"
    key = KeyRing(Layout(root)).create("dev")[1]
    server = serve(root)
    with Client(server.base, key) as client:
        saved = client.save(
            "session-abc123",
            project_path="/Users/dev/myapp",
            files_modified=["app/main.py"],
            key_decisions=["Switched to async endpoints for better throughput"],
            open_tasks=["Write tests for /api/v1/models/available"],
            event="pre_compact",
        )
        assert saved.version == 1
        # the next session: a new client restores the state
    with Client(server.base, key) as client:
        latest = client.latest()
        assert latest["session_id"] == "session-abc123"
        assert latest["session_data"]["open_tasks"] == ["Write tests for /api/v1/models/available"]
        assert latest == saved
        assert client.get("session-abc123") == saved
        client.save("session-abc123", open_tasks=[], event="session_end")
        assert client.get("session-abc123", version=1) == saved
        assert client.history("session-abc123").items[0].version == 2
        d = client.diff("session-abc123")
        assert d.removed["open_tasks"] == ["Write tests for /api/v1/models/available"]
        assert [s.session_id for s in client.sessions().items] == ["session-abc123"]
        with pytest.raises(ClientError) as err:
            client.get("nope")
        assert err.value.status == 404 and "nope" in str(err.value.detail)
        with pytest.raises(ClientError) as err:
            client.save("bad id")
        assert err.value.status == 422 and "session_id" in str(err.value)
        assert client.delete("session-abc123") == 2
        with pytest.raises(ClientError):
            client.latest()
    with pytest.raises(ClientError) as err, Client(server.base, "smk_wrong") as bad:
        bad.latest()
    assert err.value.status == 401


def test_serve_without_keys_creates_one_and_says_so(tmp_path: Path, serve) -> None:
    root = tmp_path / ".memory"
    server = serve(root, env={"SESSIONMEM_USER": "solo"})
    # the first stdout lines are the announcement, the key alone on the last of them
    lines = [server.proc.stdout.readline().strip() for _ in range(3)]
    assert "created one for user 'solo'" in lines[0]
    assert "sessionmem keys create USER" in lines[1]
    key = lines[2]
    assert key.startswith("smk_")
    r = httpx.get(
        server.base + "/api/v1/public/memory/v2/session/latest", headers={"x-api-key": key}
    )
    assert r.status_code == 404  # authenticated; nothing stored yet
    keys_file = root / ".local" / "keys.json"
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
    assert key not in keys_file.read_text()


def test_cli_talks_to_a_server_with_url_and_api_key(tmp_path: Path, serve) -> None:
    import os
    import subprocess

    from conftest import sessionmem_cmd

    root = tmp_path / ".memory"
    key = KeyRing(Layout(root)).create("dev")[1]
    server = serve(root)
    env = {**os.environ, "SESSIONMEM_URL": server.base, "SESSIONMEM_API_KEY": key}
    env.pop("SESSIONMEM_ROOT", None)

    def cli(*args: str) -> str:
        out = subprocess.run(
            [*sessionmem_cmd(), *args], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert cli("save", "--session-id", "remote", "--task", "a").startswith(
        "Saved remote version 1 ("
    )
    cli("save", "--session-id", "remote", "--merge", "--task", "b")
    assert cli("show", "remote", "--version", "1", "--json").count('"a"') == 1
    assert '"open_tasks":["a","b"]' in cli("latest", "--json")
    history = cli("history", "remote", "--json")
    assert '"version":2' in history and '"version":1' in history
    assert "+ b" in cli("diff", "remote")
    assert cli("delete", "remote") == "Deleted session remote (2 versions hidden).\n"
    # it went through the server: the server's folder has the events, under the key's user
    assert (root / "log" / "dev").is_dir()


def test_async_client_against_a_real_server(tmp_path: Path, serve) -> None:
    import asyncio

    from sessionmem import AsyncClient

    root = tmp_path / ".memory"
    key = KeyRing(Layout(root)).create("dev")[1]
    server = serve(root)

    async def main() -> None:
        async with AsyncClient(server.base, key) as client:
            first, second = await asyncio.gather(
                client.save("a", open_tasks=["x"]), client.save("b", open_tasks=["y"])
            )
            assert {first.session_id, second.session_id} == {"a", "b"}
            await client.save("a", open_tasks=["x", "z"], idempotency_key="r1")
            again = await client.save("a", open_tasks=["x", "z"], idempotency_key="r1")
            assert again.version == 2
            assert (await client.get("a", version=1)).open_tasks == ["x"]
            assert (await client.diff("a")).added["open_tasks"] == ["z"]
            assert [e.version for e in (await client.history("a")).items] == [2, 1]
            assert {s.session_id for s in (await client.sessions()).items} == {"a", "b"}
            assert (await client.health())["status"] == "ok"
            assert await client.delete("b") == 1
            with pytest.raises(ClientError) as err:
                await client.get("b")
            assert err.value.status == 404

    asyncio.run(main())


def test_several_workers_get_a_tcp_listening_socket() -> None:
    """uvicorn's own socket for --workers has protocol 0, so asyncio never sets TCP_NODELAY on
    its connections (40 ms stalls); `serve` restores the protocol."""
    import socket

    import uvicorn.config

    from sessionmem.cli.serving import _accepted_sockets_without_delay

    original = uvicorn.config.Config.bind_socket
    try:
        _accepted_sockets_without_delay()
        _accepted_sockets_without_delay()  # idempotent
        config = uvicorn.config.Config(app="x:y", host="127.0.0.1", port=0)
        sock = config.bind_socket()
        try:
            assert sock.proto == socket.IPPROTO_TCP
            sock.listen()
            conn = socket.create_connection(sock.getsockname())
            accepted, _ = sock.accept()
            assert accepted.proto == socket.IPPROTO_TCP  # what asyncio checks before NODELAY
            accepted.close()
            conn.close()
        finally:
            sock.close()
    finally:
        uvicorn.config.Config.bind_socket = original  # type: ignore[method-assign]
