"""The PostgreSQL engine's schema (docs/decisions.md, "PostgreSQL"), and its version.

An append-only log per session: `events` holds each event's canonical line — the very bytes the
file engine writes, so a snapshot answers the same — keyed by (user, session, position), the
position a session's writers compete for (optimistic concurrency: a second insert of the same
position fails, and the writer reads again and retries). `heads` holds each session's newest event
for the listings; `idempotency` the first event each Idempotency-Key stored; `api_keys` the keys'
hashes; `erased` the erase records of `forget`.

The schema is made and moved forward only by `sessionmem db upgrade` (`upgrade`); a server or
command meeting a database without it, or with another version, stops with a line saying which
(`check`).
"""

from __future__ import annotations

from typing import Any

from ..errors import StorageError

SCHEMA_VERSION = 1

# Each version's statements, applied in order by `upgrade` (never edited once released).
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE sessionmem_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE SEQUENCE sessionmem_seq;  -- the seq of this engine's own lines (writer "postgres")
CREATE TABLE events (
    user_id text NOT NULL,
    session_id text NOT NULL,
    pos integer NOT NULL,          -- the session's own position, from 1, tombstones included
    epoch integer NOT NULL,        -- how many tombstones came before it in the session
    version integer NOT NULL,      -- the live version within its epoch (0: a tombstone)
    type text NOT NULL,
    id uuid NOT NULL,
    ts_ms bigint NOT NULL,
    writer text NOT NULL,
    seq bigint NOT NULL,
    idh bigint NOT NULL,
    line bytea NOT NULL,           -- the canonical line, as the file engine writes it
    ts text NOT NULL,              -- the line's time, for search's since/until
    event text,                    -- what search filters on, per snapshot
    project_path text,
    git_branch text,
    agent text,
    doc tsvector,                  -- tasks A, decisions B, files C, commands D (search)
    counts integer[] NOT NULL,     -- the lengths of the list fields (the history's counts)
    PRIMARY KEY (user_id, session_id, pos),
    UNIQUE (user_id, id)
);
CREATE INDEX events_doc ON events USING gin (doc);
CREATE INDEX events_ts ON events (ts_ms);  -- the web page's saves per day (the last 30 days)
CREATE TABLE heads (
    user_id text NOT NULL,
    session_id text NOT NULL,
    pos integer NOT NULL,
    epoch integer NOT NULL,
    live integer NOT NULL,         -- live versions (0 after a tombstone)
    type text NOT NULL,
    ts_ms bigint NOT NULL,
    writer text NOT NULL,
    seq bigint NOT NULL,
    idh bigint NOT NULL,
    id uuid NOT NULL,
    event text,
    project_path text,
    git_branch text,
    agent text,
    counts jsonb NOT NULL,
    PRIMARY KEY (user_id, session_id)
);
CREATE INDEX heads_newest ON heads (user_id, ts_ms DESC, writer DESC, seq DESC, idh DESC);
CREATE TABLE idempotency (
    user_id text NOT NULL,
    key_hash text NOT NULL,
    event_id uuid NOT NULL,
    body_hash text NOT NULL,
    PRIMARY KEY (user_id, key_hash)
);
CREATE TABLE api_keys (
    sha256 text PRIMARY KEY,
    user_id text NOT NULL,
    created_at text NOT NULL
);
CREATE TABLE erased (
    id uuid PRIMARY KEY,
    user_id text NOT NULL,
    record jsonb NOT NULL
);
""",
}


def version_of(conn: Any) -> int | None:
    """The schema version the database holds; None when it has none of ours."""
    row = conn.execute("SELECT to_regclass('sessionmem_meta')").fetchone()
    if row is None or row[0] is None:
        return None
    got = conn.execute("SELECT value FROM sessionmem_meta WHERE key = 'schema'").fetchone()
    return int(got[0]) if got else None


def check(conn: Any, url: str) -> None:
    """Refuse, in one line, a database whose schema is not this code's."""
    have = version_of(conn)
    if have == SCHEMA_VERSION:
        return
    if have is None:
        raise StorageError(
            f"The database {url} holds no sessionmem schema: run `sessionmem db upgrade "
            f"--database {url}` once."
        )
    if have < SCHEMA_VERSION:
        raise StorageError(
            f"The database {url} holds schema version {have}; this sessionmem needs "
            f"{SCHEMA_VERSION}: run `sessionmem db upgrade --database {url}`."
        )
    raise StorageError(
        f"The database {url} holds schema version {have}, newer than this sessionmem's "
        f"{SCHEMA_VERSION}: upgrade sessionmem on this machine."
    )


def upgrade(conn: Any) -> list[int]:
    """Apply the migrations the database lacks, in one transaction each; returns the versions
    applied. Taking an advisory lock, so two upgrades at once run one after the other."""
    done = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7415)")
        have = version_of(conn) or 0
        if have > SCHEMA_VERSION:
            raise StorageError(
                f"The database holds schema version {have}, newer than this sessionmem's "
                f"{SCHEMA_VERSION}: upgrade sessionmem first."
            )
        for version in range(have + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[version])
            conn.execute(
                "INSERT INTO sessionmem_meta VALUES ('schema', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(version),),
            )
            done.append(version)
    return done
