"""Search on the PostgreSQL engine (docs/decisions.md, "PostgreSQL"), with PostgreSQL's own
full-text search: the query syntax, scopes, filters, liveness and paging of the file engine's
(`search.parse_query`), over a `tsvector` per snapshot — tasks weighted A, decisions B, files C,
commands D, so a scope is a weight — ranked by `ts_rank` with the file engine's column weights
(tasks and decisions 4, files 2, commands 1), then newest first.

Words are the file engine's: runs of word characters, lower-cased (`\\w+`), given to the `simple`
configuration (no stemming, no stop words) on both sides. Snippets mark the query's words in
[brackets] in the best-matching field, at most 16 words around them.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from ..codec import decode
from ..errors import FieldError, InvalidInput
from ..model import SearchHit
from ..search import COLUMNS, FIELD_OF, Term, parse_query

WEIGHT = {"task": "A", "decision": "B", "file": "C", "command": "D"}
RANK_WEIGHTS = "{0.25, 0.5, 1, 1}"  # D, C, B, A: commands, files, decisions, tasks (1:2:4:4)
DOC_SQL = " || ".join(f"setweight(to_tsvector('simple', %s), '{WEIGHT[c]}')" for c in COLUMNS)
SNIPPET_WORDS = 16


def words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _texts(data: dict[str, Any]) -> list[str]:
    out = []
    for column in COLUMNS:
        items = data.get(FIELD_OF[column])
        lines = [x for x in items if isinstance(x, str)] if isinstance(items, list) else []
        out.append("\n".join(lines))
    return out


def search_doc(data: dict[str, Any]) -> list[str]:
    """The four texts `DOC_SQL` makes a snapshot's tsvector of."""
    return [words(t) for t in _texts(data)]


def tsquery(terms: list[Term]) -> str:
    """The terms as a `to_tsquery('simple', …)` text: each word quoted (nothing read as syntax),
    a phrase joined by <->, a scope as the field's weight, a prefix as :*, all required."""
    parts = []
    for term in terms:
        weight = WEIGHT[term.field] if term.field else ""
        quoted = []
        for i, token in enumerate(term.tokens):
            last = i == len(term.tokens) - 1
            mark = ("*" if term.prefix and last else "") + weight
            quoted.append("'" + token.lower().replace("'", "") + "'" + (f":{mark}" if mark else ""))
        parts.append("(" + " <-> ".join(quoted) + ")")
    return " & ".join(parts)


def find(
    conn: Any,
    user: str,
    q: str,
    where: dict[str, Any],
    every: bool,
    limit: int,
    start: int,
    budget: float,
) -> tuple[list[SearchHit], int | None]:
    """A page of live hits from position `start`, and the position after it when there are
    more. The query runs with a statement timeout of `budget` (past it, 422 naming `q`)."""
    terms = parse_query(q)
    sql = [
        "SELECT e.session_id, e.version, e.id, e.ts, e.line FROM events e JOIN heads h ON "
        "h.user_id = e.user_id AND h.session_id = e.session_id WHERE e.user_id = %s AND "
        "e.type = 'snapshot' AND h.type = 'snapshot' AND e.epoch = h.epoch AND "
        "e.doc @@ to_tsquery('simple', %s)"
    ]
    args: list[Any] = [user, tsquery(terms)]
    if not every:
        sql.append("AND e.version = h.live")
    filters = (("project_path", "="), ("git_branch", "="), ("event", "="), ("agent", "="),
               ("session_id", "="), ("since", ">="), ("until", "<="))  # fmt: skip
    for column, op in filters:
        value = where.get(column)
        if value is not None:
            target = 'e.ts COLLATE "C"' if column in ("since", "until") else f"e.{column}"
            sql.append(f"AND {target} {op} %s")
            args.append(value)
    sql.append(
        f"ORDER BY ts_rank('{RANK_WEIGHTS}', e.doc, to_tsquery('simple', %s)) DESC, "
        "e.ts_ms DESC, e.id DESC OFFSET %s LIMIT %s"
    )
    args += [tsquery(terms), start, limit + 1]
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL statement_timeout = {int(budget * 1000)}")
            rows = conn.execute(" ".join(sql), args).fetchall()
    except psycopg.errors.QueryCanceled:
        raise InvalidInput(
            FieldError(
                "q",
                f"took longer than the {budget:g} s a search may take; narrow it (a rarer word, "
                "a field such as task:, a project or a since filter).",
            )
        ) from None
    except psycopg.errors.SyntaxError as exc:
        raise InvalidInput(FieldError("q", f"cannot be searched ({exc}).")) from None
    hits = []
    for session_id, version, event_id, ts, line in rows[:limit]:
        field, snippet = _snippet(decode(bytes(line)).data, terms)
        hits.append(SearchHit(session_id, version, str(event_id), field, snippet, ts))
    return hits, (start + limit if len(rows) > limit else None)


def _snippet(data: dict[str, Any], terms: list[Term]) -> tuple[str, str]:
    """(field, snippet) of the best-matching field: the query's words in [brackets], at most
    SNIPPET_WORDS words of the text around the first one."""
    texts = _texts(data)
    best = (0, 0)
    for n, (column, text) in enumerate(zip(COLUMNS, texts, strict=True)):
        wanted = {t.lower() for term in terms if term.field in (None, column) for t in term.tokens}
        prefixes = [term.tokens[-1].lower() for term in terms
                    if term.prefix and term.field in (None, column)]  # fmt: skip
        found = sum(1 for w in re.findall(r"\w+", text.lower())
                    if w in wanted or any(w.startswith(p) for p in prefixes))  # fmt: skip
        if found > best[0]:
            best = (found, n)
    column, text = COLUMNS[best[1]], texts[best[1]]
    pieces = re.split(r"(\w+)", text)  # separators at even places, words at odd ones
    words_at = list(range(1, len(pieces), 2))
    low = [pieces[i].lower() for i in words_at]
    spans: list[tuple[int, int]] = []  # (first word, last word) of each match, by word number
    for term in terms:
        want = [t.lower() for t in term.tokens]
        for k in range(len(low) - len(want) + 1):
            tail_ok = low[k + len(want) - 1].startswith(want[-1]) if term.prefix else (
                low[k + len(want) - 1] == want[-1])  # fmt: skip
            if low[k : k + len(want) - 1] == want[:-1] and tail_ok:
                spans.append((k, k + len(want) - 1))
    if not spans:
        return FIELD_OF[column], text[:200]
    starts = {a: b for a, b in sorted(spans, reverse=True)}  # the longest span at each word
    out, k, first = [], 0, min(starts)
    lo = max(0, first - SNIPPET_WORDS // 4)
    hi = min(len(words_at), lo + SNIPPET_WORDS)
    k = lo
    while k < hi:
        a = words_at[k]
        if k in starts:
            end = min(starts[k], hi - 1)
            out.append("[" + "".join(pieces[a : words_at[end] + 1]) + "]")
            k = end + 1
        else:
            out.append(pieces[a])
            k += 1
        if k < hi:
            out.append(pieces[words_at[k] - 1])
    body = "".join(out)
    return FIELD_OF[column], ("…" if lo > 0 else "") + body + ("…" if hi < len(words_at) else "")
