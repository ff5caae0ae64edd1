"""Forget, forget --text and prune on the PostgreSQL engine (docs/decisions.md, "Forgetting"):
the same meaning as on a memory folder (`sessionmem.forget`), in one transaction each — rows
deleted or rewritten, versions numbered again where some were taken out, and an erase record of
ids and hashes kept in `erased` (copied to a folder's `erased/` by `sessionmem copy`)."""

from __future__ import annotations

from typing import Any

import orjson
from psycopg.types.json import Jsonb

from .. import erase
from ..codec import decode, encode, ms_to_ts, now_ms, uuid7
from ..forget import Forgotten, check_prune, check_text, redact_text
from ..layout import check_user
from ..pages import no_session
from ..rules import check_session_id
from .search import DOC_SQL, search_doc
from .write import WRITER, text_or_none


def forget_session(conn: Any, user: str, session_id: str) -> Forgotten:
    check_user(user)
    check_session_id(session_id)
    with conn.transaction():
        rows = conn.execute(
            "DELETE FROM events WHERE user_id = %s AND session_id = %s "
            "RETURNING id, writer, seq, line",
            (user, session_id),
        ).fetchall()
        if not rows:
            raise no_session(session_id, user)
        conn.execute("DELETE FROM heads WHERE user_id = %s AND session_id = %s",
                     (user, session_id))  # fmt: skip
        _drop_keys(conn, user, [str(r[0]) for r in rows])
        record = _record(conn, user, "forget", rows, session=erase.session_hash(session_id),
                         until=ms_to_ts(now_ms()))  # fmt: skip
    return Forgotten(events=len(rows), record=record)


def forget_text(conn: Any, text: str) -> Forgotten:
    check_text(text)
    escaped = orjson.dumps(text)[1:-1]
    done = Forgotten()
    with conn.transaction():
        rows = conn.execute(
            "SELECT user_id, session_id, pos, id, writer, seq, line FROM events WHERE "
            "position(%s in line) > 0 ORDER BY user_id FOR UPDATE",
            (escaped,),
        ).fetchall()
        by_user: dict[str, list[Any]] = {}
        for user, session_id, pos, event_id, writer, seq, line in rows:
            ev = decode(bytes(line))
            new = ev._replace(data=redact_text(ev.data, text))
            fields = [
                text_or_none(new.data.get(k)) for k in ("event", "project_path", "git_branch")
            ]
            conn.execute(
                f"UPDATE events SET line = %s, event = %s, project_path = %s, git_branch = %s, "
                f"doc = {DOC_SQL if ev.type == 'snapshot' else 'NULL'} WHERE user_id = %s AND "
                "session_id = %s AND pos = %s",
                (encode(new), *fields,
                 *(search_doc(new.data) if ev.type == "snapshot" else ()),
                 user, session_id, pos),
            )  # fmt: skip
            conn.execute(
                "UPDATE heads SET event = %s, project_path = %s, git_branch = %s WHERE "
                "user_id = %s AND session_id = %s AND pos = %s",
                (*fields, user, session_id, pos),
            )
            by_user.setdefault(user, []).append((event_id, writer, seq, line))
        for user, lines in by_user.items():
            done.record = _record(conn, user, "forget-text", lines, text=erase.text_hash(text))
    done.events = len(rows)
    return done


def prune(conn: Any, user: str, keep_versions: int | None, older_than_ms: int | None) -> Forgotten:
    """Per session, the snapshots beyond the newest `keep_versions` and those older than
    `older_than_ms` go; each session's newest snapshot and every tombstone stay, and the versions
    left count from 1 again."""
    check_user(user)
    check_prune(keep_versions, older_than_ms)
    cutoff = now_ms() - older_than_ms if older_than_ms is not None else None
    with conn.transaction():
        conn.execute(  # in the writers' order (user, session): no deadlock with them
            "SELECT 1 FROM heads WHERE user_id = %s ORDER BY session_id FOR UPDATE", (user,)
        )
        rows = conn.execute(
            "DELETE FROM events e USING (SELECT session_id, pos, row_number() OVER (PARTITION "
            "BY session_id ORDER BY ts_ms DESC, writer DESC, seq DESC, id DESC) AS rank, ts_ms "
            "FROM events WHERE user_id = %s AND type = 'snapshot') r WHERE e.user_id = %s AND "
            "e.session_id = r.session_id AND e.pos = r.pos AND r.rank > 1 AND "
            "(r.rank > %s OR r.ts_ms < %s) RETURNING e.id, e.writer, e.seq, e.line",
            (user, user, keep_versions or 1 << 62, cutoff if cutoff is not None else -1),
        ).fetchall()
        if not rows:
            return Forgotten()
        _drop_keys(conn, user, [str(r[0]) for r in rows])
        conn.execute(  # the versions left, counted again within each epoch
            "UPDATE events e SET version = n.v FROM (SELECT session_id, pos, row_number() OVER "
            "(PARTITION BY session_id, epoch ORDER BY pos) AS v FROM events WHERE user_id = %s "
            "AND type = 'snapshot') n WHERE e.user_id = %s AND e.session_id = n.session_id AND "
            "e.pos = n.pos AND e.version <> n.v",
            (user, user),
        )
        conn.execute(
            "UPDATE heads h SET live = COALESCE((SELECT max(version) FROM events e WHERE "
            "e.user_id = h.user_id AND e.session_id = h.session_id AND e.epoch = h.epoch AND "
            "e.type = 'snapshot'), 0) WHERE h.user_id = %s AND h.type = 'snapshot'",
            (user,),
        )
        record = _record(conn, user, "prune", rows)
    return Forgotten(events=len(rows), record=record)


def _drop_keys(conn: Any, user: str, ids: list[str]) -> None:
    conn.execute("DELETE FROM idempotency WHERE user_id = %s AND event_id = ANY(%s)",
                 (user, ids))  # fmt: skip


def _record(conn: Any, user: str, why: str, rows: list[Any], **fields: str) -> str:
    """Keep an erase record of these rows (id, writer, seq, line): ids and hashes only."""
    record_id = uuid7()
    record = {
        "v": 1, "type": "erase", "id": record_id, "ts": ms_to_ts(now_ms()), "user": user,
        "writer": WRITER, "why": why, **fields,
        "lines": [[str(r[0]), r[1], r[2], erase.line_hash(bytes(r[3]))] for r in rows],
    }  # fmt: skip
    conn.execute("INSERT INTO erased VALUES (%s, %s, %s)", (record_id, user, Jsonb(record)))
    return record_id
