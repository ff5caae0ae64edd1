from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sessionmem import Store
from sessionmem.http.app import create_app
from sessionmem.keys import KeyRing

from conftest import url

SEED = {
    "session_id": "session-abc123",
    "project_path": "/Users/dev/myapp",
    "files_modified": ["app/main.py"],
    "commands_run": [],
    "key_decisions": ["Switched to async endpoints for better throughput"],
    "open_tasks": ["Write tests for /api/v1/models/available"],
    "event": "pre_compact",
}


def test_post_then_latest_has_the_fixed_shape(http: TestClient) -> None:
    r = http.post(url("/session"), json=SEED)
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {
        "session_id",
        "version",
        "snapshot_id",
        "event",
        "created_at",
        "session_data",
    }
    assert body["session_id"] == "session-abc123"
    assert body["version"] == 1
    assert body["event"] == "pre_compact"
    assert body["session_data"] == {k: v for k, v in SEED.items() if k != "session_id"}
    latest = http.get(url("/session/latest")).json()
    assert latest == body
    assert latest["session_data"]["open_tasks"] == ["Write tests for /api/v1/models/available"]
    assert http.get(url("/session/session-abc123")).json() == body


def test_health_needs_no_key(store: Store) -> None:
    with TestClient(create_app(store)) as c:
        r = c.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.parametrize("key", [None, "", "smk_wrong", "x" * 5000])
def test_missing_and_unknown_keys_get_the_same_401(http: TestClient, key: str | None) -> None:
    headers = {} if key is None else {"x-api-key": key}
    del http.headers["x-api-key"]
    for method, path in [
        ("GET", "/session/latest"),
        ("GET", "/session/x"),
        ("POST", "/session"),
        ("GET", "/sessions"),
    ]:
        r = http.request(method, url(path), headers=headers, json=SEED)
        assert r.status_code == 401
        assert "API key" in r.json()["detail"]


def test_another_users_session_is_a_404_without_content(
    http: TestClient, keys: dict[str, str]
) -> None:
    http.post(url("/session"), json={**SEED, "open_tasks": ["alice secret"]})
    bob = {"x-api-key": keys["bob"]}
    for path in [
        "/session/session-abc123",
        "/session/session-abc123/history",
        "/session/session-abc123/diff",
        "/session/latest",
    ]:
        r = http.get(url(path), headers=bob)
        assert r.status_code == 404, path
        assert "alice secret" not in r.text
    assert http.delete(url("/session/session-abc123"), headers=bob).status_code == 404
    assert http.get(url("/sessions"), headers=bob).json()["items"] == []
    assert http.get(url("/session/session-abc123")).status_code == 200


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{}", "session_id"),
        (b'{"session_id": ""}', "session_id"),
        (b'{"session_id": "has space"}', "session_id"),
        (b'{"session_id": "a/b"}', "session_id"),
        (b'{"session_id": "latest"}', "session_id"),
        (b'{"session_id": null}', "session_id"),
        (b'{"session_id": ["x"]}', "session_id"),
        (b'{"session_id": "s", "open_tasks": "x"}', "open_tasks"),
        (b'{"session_id": "s", "files_modified": [1, 2]}', "files_modified.0"),
        (b'{"session_id": "s", "commands_run": {"a": 1}}', "commands_run"),
        (b'{"session_id": "s", "key_decisions": [null]}', "key_decisions.0"),
        (b'{"session_id": "s", "event": "compact"}', "event"),
        (b'{"session_id": "s", "event": 3}', "event"),
        (b'{"session_id": "s", "git_branch": 1}', "git_branch"),
        (b'{"session_id": "s", "metadata": "x"}', "metadata"),
        (b'{"session_id": "s", "snapshot_id": "nope"}', "snapshot_id"),
        (b'{"session_id": "s", "x": NaN}', "body"),
        (b'{"session_id": "s", "x": Infinity}', "body"),
        (b'{"session_id": "s", "x": 1e999}', "body"),
        (b'{"session_id": "s"', "body"),
        (b"[1, 2]", "body"),
        (b'"text"', "body"),
        (b"", "body"),
        (b"\xff\xfe", "body"),
        (b'{"session_id": "\\ud800"}', "body"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(http: TestClient, raw: bytes, field: str) -> None:
    r = http.post(url("/session"), content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert field in [d["field"] for d in detail]
    assert all(d["msg"].startswith(d["field"]) for d in detail)
    assert http.get(url("/sessions")).json()["items"] == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/session/bad%20id", "session_id"),
        ("/session/s?version=0", "version"),
        ("/session/s?version=abc", "version"),
        ("/session/s?snapshot_id=zzz", "snapshot_id"),
        ("/session/s?version=1&snapshot_id=0193b7d2-0000-7000-8000-000000000001", "version"),
        ("/session/s/history?limit=0", "limit"),
        ("/session/s/history?limit=5000", "limit"),
        ("/session/s/history?cursor=garbage", "cursor"),
        ("/session/s/diff?from=banana", "from"),
        ("/sessions?event=nope", "event"),
        ("/sessions?cursor=%%%", "cursor"),
        ("/session/latest?event=nope", "event"),
    ],
)
def test_invalid_queries_are_422(http: TestClient, path: str, field: str) -> None:
    http.post(url("/session"), json={"session_id": "s"})
    r = http.get(url(path))
    assert r.status_code == 422, r.text
    assert field in [d["field"] for d in r.json()["detail"]]


def test_body_over_the_limit_is_413(store: Store, keys: dict[str, str]) -> None:
    with TestClient(create_app(store, max_body=2048)) as c:
        c.headers["x-api-key"] = keys["alice"]
        big = {"session_id": "s", "open_tasks": ["x" * 3000]}
        r = c.post(url("/session"), json=big)
        assert r.status_code == 413
        assert "limit" in r.json()["detail"]
        assert c.post(url("/session"), json={"session_id": "s"}).status_code == 201


def test_default_limit_is_one_mebibyte(http: TestClient) -> None:
    r = http.post(url("/session"), json={"session_id": "s", "open_tasks": ["x" * 60_000] * 18})
    assert r.status_code == 413
    r = http.post(url("/session"), json={"session_id": "s", "open_tasks": ["x" * 60_000] * 16})
    assert r.status_code == 201


def test_idempotency_key_header(http: TestClient) -> None:
    h = {"Idempotency-Key": "retry-1"}
    a = http.post(url("/session"), json=SEED, headers=h)
    b = http.post(url("/session"), json=SEED, headers=h)
    assert a.status_code == b.status_code == 201
    assert a.json() == b.json()
    c = http.post(url("/session"), json={**SEED, "open_tasks": []}, headers=h)
    assert c.status_code == 409
    assert "Idempotency-Key" in c.json()["detail"]
    assert len(http.get(url("/session/session-abc123/history")).json()["items"]) == 1


def test_unknown_route_is_json_404(http: TestClient) -> None:
    r = http.get("/nope")
    assert r.status_code == 404 and "detail" in r.json()


def test_openapi_documents_the_contract(http: TestClient) -> None:
    doc = http.get("/openapi.json").json()
    paths = doc["paths"]
    for p in [
        "/session",
        "/session/latest",
        "/session/{session_id}",
        "/session/{session_id}/history",
        "/session/{session_id}/diff",
        "/sessions",
    ]:
        assert url(p) in paths
    body = paths[url("/session")]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "session_id" in body["required"]
    assert http.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "path", ["/session/latest?projectpath=/x", "/sessions?limt=5", "/session/s?verison=1"]
)
def test_unknown_query_parameters_are_refused(http: TestClient, path: str) -> None:
    http.post(url("/session"), json={"session_id": "s"})
    r = http.get(url(path))
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert "is not a parameter of this endpoint" in err["msg"]


def test_a_key_revoked_by_another_process_stops_working(tmp_path: Path) -> None:
    """The server keeps keys.json's contents between requests (issue 6); a key revoked by the
    CLI, another process, must still stop working within RECHECK_SECONDS."""
    import subprocess
    import sys
    import time

    from sessionmem.keys import RECHECK_SECONDS

    store = Store(tmp_path / ".memory")
    keys = KeyRing(store.layout)
    info, key = keys.create("alice")
    client = TestClient(create_app(store, keys=keys))
    url = "/api/v1/public/memory/v2/session/latest"
    assert client.get(url, headers={"x-api-key": key}).status_code == 404  # known, no snapshot
    code = (
        "from sessionmem.keys import KeyRing; from sessionmem.layout import Layout; "
        f"KeyRing(Layout({str(store.root)!r})).revoke({info.id!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    time.sleep(RECHECK_SECONDS + 0.1)
    assert client.get(url, headers={"x-api-key": key}).status_code == 401


def test_a_parameter_named_with_a_unicode_digit_is_a_422(http) -> None:  # type: ignore[no-untyped-def]
    # found by the OpenAPI fuzz run: `'²'.isdigit()` is True, and int('²') raised (a 500)
    r = http.get(url("/session/latest"), params={"\u00b2": ""})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "\u00b2"]


def test_a_content_length_of_unicode_digits_is_a_400(http) -> None:  # type: ignore[no-untyped-def]
    r = http.post(
        url("/session"),
        content=b'{"session_id": "s"}',
        headers={"content-type": "application/json", "content-length": b"\xb2"},
    )
    assert r.status_code == 400 and "Content-Length" in r.json()["detail"]
