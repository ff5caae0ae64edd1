"""`sessionmem.Client`: the HTTP API from Python, over httpx (SPEC §4).

Results are the library's own frozen dataclasses (`Snapshot`, `Page`, `Diff`); an error answer
raises `ClientError` carrying the server's status and detail.
"""

from __future__ import annotations

from typing import Any

import httpx

from .errors import ClientError
from .model import Diff, HistoryEntry, Page, SessionSummary, Snapshot

PREFIX = "/api/v1/public/memory/v2"


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class Client:
    """A client for a sessionmem server.

    >>> client = Client("http://127.0.0.1:8765", api_key="smk_...")  # doctest: +SKIP
    >>> client.save("session-abc123", open_tasks=["Write tests"])  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"x-api-key": api_key} if api_key else {}
        if http is not None:
            http.headers.update(headers)
            self._http = http
        else:
            self._http = httpx.Client(
                base_url=base_url, headers=headers, timeout=timeout, transport=transport
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(0, f"Could not reach the sessionmem server: {exc}.") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ClientError(response.status_code, detail)
        return response.json()

    # --- the seed contract -------------------------------------------------------------

    def save(
        self,
        session_id: str | dict[str, Any],
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Snapshot:
        """Store a full snapshot: `save("s1", open_tasks=[...])` or `save({...body...})`."""
        body = dict(session_id) if isinstance(session_id, dict) else {"session_id": session_id}
        body.update(fields)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Snapshot.from_view(
            self._call("POST", f"{PREFIX}/session", json=body, headers=headers)
        )

    def latest(
        self,
        *,
        project_path: str | None = None,
        git_branch: str | None = None,
        event: str | None = None,
    ) -> Snapshot:
        params = _params(project_path=project_path, git_branch=git_branch, event=event)
        return Snapshot.from_view(self._call("GET", f"{PREFIX}/session/latest", params=params))

    def get(
        self, session_id: str, *, version: int | None = None, snapshot_id: str | None = None
    ) -> Snapshot:
        params = _params(version=version, snapshot_id=snapshot_id)
        return Snapshot.from_view(
            self._call("GET", f"{PREFIX}/session/{session_id}", params=params)
        )

    # --- beyond it -----------------------------------------------------------------------

    def history(self, session_id: str, *, limit: int = 50, cursor: str | None = None) -> Page:
        raw = self._call(
            "GET",
            f"{PREFIX}/session/{session_id}/history",
            params=_params(limit=limit, cursor=cursor),
        )
        return Page([HistoryEntry(**i) for i in raw["items"]], raw["next_cursor"])

    def diff(
        self, session_id: str, from_: int | str | None = None, to: int | str | None = None
    ) -> Diff:
        raw = self._call(
            "GET",
            f"{PREFIX}/session/{session_id}/diff",
            params=_params(**{"from": from_, "to": to}),
        )
        return Diff(
            session_id=raw["session_id"],
            from_version=raw["from"]["version"],
            to_version=raw["to"]["version"],
            from_snapshot_id=raw["from"]["snapshot_id"],
            to_snapshot_id=raw["to"]["snapshot_id"],
            from_created_at=raw["from"]["created_at"],
            to_created_at=raw["to"]["created_at"],
            added=raw["added"],
            removed=raw["removed"],
            changed=raw["changed"],
        )

    def sessions(
        self,
        *,
        project_path: str | None = None,
        git_branch: str | None = None,
        event: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        raw = self._call(
            "GET",
            f"{PREFIX}/sessions",
            params=_params(
                project_path=project_path,
                git_branch=git_branch,
                event=event,
                limit=limit,
                cursor=cursor,
            ),
        )
        return Page([SessionSummary(**i) for i in raw["items"]], raw["next_cursor"])

    def delete(self, session_id: str) -> int:
        """Hide a session from every read; returns how many versions it hid."""
        return int(self._call("DELETE", f"{PREFIX}/session/{session_id}")["versions"])

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/healthz"))
