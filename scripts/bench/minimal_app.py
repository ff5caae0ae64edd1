"""The baseline web app: FastAPI on uvicorn with the same request model as sessionmem's POST,
doing nothing but validating (POST) or returning pre-serialized bytes (GET)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from sessionmem.http.schemas import SnapshotIn

app = FastAPI()
_BODY = (
    b'{"session_id":"s","version":1,"snapshot_id":"01a2148e-b0a0-78bc-a61f-2b24bef470a8",'
    b'"event":"checkpoint","created_at":"2026-11-25T21:13:45.376Z","session_data":'
    b'{"open_tasks":["a","b"],"files_modified":[],"commands_run":[],"key_decisions":[],'
    b'"project_path":null,"event":"checkpoint"}}'
)


@app.post("/api/v1/public/memory/v2/session", status_code=201)
async def post(body: SnapshotIn) -> Response:
    return Response(b'{"ok":true}', status_code=201, media_type="application/json")


@app.get("/api/v1/public/memory/v2/session/latest")
async def latest() -> Response:
    return Response(_BODY, media_type="application/json")


@app.get("/api/v1/public/memory/v2/session/{session_id}")
async def by_id(session_id: str) -> Response:
    return Response(_BODY, media_type="application/json")
