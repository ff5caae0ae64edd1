"""The hot reads of the PostgreSQL engine (docs/decisions.md, "PostgreSQL"): GET latest and GET
by id for an asyncio server. The GETs that arrive during one turn of its event loop are asked in
one pipelined round trip on a thread (`pg.write.LoopBatches`), each batch started after its reads
arrived — so each sees every write acknowledged before, through any replica — and the JSON of an
answer is made once per replica for the same stored line (`_json`)."""

from __future__ import annotations

from typing import Any

from ..answers import snapshot_of
from ..codec import decode
from ..errors import NotFound
from ..layout import check_user
from ..pages import check_get, no_session

HEAD_EVENT_SQL = (
    "SELECT e.line, h.live FROM heads h JOIN events e ON e.user_id = h.user_id AND "
    "e.session_id = h.session_id AND e.pos = h.pos WHERE h.user_id = %s AND h.type = 'snapshot'"
)
LATEST_SQL = HEAD_EVENT_SQL + (
    "{where} ORDER BY h.ts_ms DESC, h.writer DESC, h.seq DESC, h.idh DESC LIMIT 1"
)  # the user's newest snapshot (`where`: the filters)
NEWEST_SQL = HEAD_EVENT_SQL + " AND h.session_id = %s"  # a session's newest snapshot
_ANSWERS = 1024  # answers' JSON kept per replica (a full memory starts again)


def nothing_yet(user: str) -> NotFound:
    return NotFound(f"No snapshot stored yet for user {user!r}.", what="snapshot")


class HotReads:
    """Mixed into `PgStore`: it gives `_conn`, `_reads` (a `LoopBatches`) and `_answers`."""

    _conn: Any
    _reads: Any
    _answers: dict[tuple[bytes, int], bytes]

    async def answer_async(self, user: str, session_id: str) -> bytes:
        """GET /session/latest (`session_id` "latest") or a session's newest, as its JSON: the
        GETs of one turn of the server's loop are asked in one round trip (`_read_many`), each
        after it arrived — so it sees every write acknowledged before, through any replica."""
        if session_id != "latest":
            check_get(user, session_id, None, None)
        raw: bytes = await self._reads.write((check_user(user), session_id))
        return raw

    def _read_many(self, asked: list[tuple[str, str]]) -> list[bytes | BaseException]:
        found: dict[tuple[str, str], Any] = {}
        with self._conn() as conn, conn.pipeline():
            cursors = {
                key: conn.execute(
                    LATEST_SQL.format(where="") if key[1] == "latest" else NEWEST_SQL,
                    key[:1] if key[1] == "latest" else key,
                )  # fmt: skip
                for key in dict.fromkeys(asked)
            }
            for key, cur in cursors.items():
                found[key] = cur.fetchone()
        answers: list[bytes | BaseException] = []
        for user, session_id in asked:
            row = found[(user, session_id)]
            if row is None:
                answers.append(
                    nothing_yet(user) if session_id == "latest" else no_session(session_id, user)
                )
            else:
                answers.append(self._json(bytes(row[0]), row[1]))
        return answers

    def _json(self, line: bytes, live: int) -> bytes:
        """A snapshot's JSON, made once per replica for the same line and version."""
        raw = self._answers.get((line, live))
        if raw is None:
            raw = snapshot_of(decode(line), live).json()
            if len(self._answers) >= _ANSWERS:
                self._answers.clear()
            self._answers[(line, live)] = raw
        return raw

    def saves_per_day(self, user: str, since_ms: int) -> dict[int, int]:
        """Snapshots stored per UTC day (days since 1970) from `since_ms` on."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT ts_ms / 86400000, count(*) FROM events WHERE user_id = %s AND "
                "type = 'snapshot' AND ts_ms >= %s GROUP BY 1",
                (check_user(user), since_ms),
            ).fetchall()
        return {int(day): int(n) for day, n in rows}
