"""The web page's rules over HTTP (docs/web.md), on every engine: sign-in and out, the cookie's
attributes, CSRF on every form that changes something, stored strings shown as text, another
user's session a 404, the security headers; and fuzzing of the cookie and of what a page shows.
The same pages in a real browser: tests/test_web_browser.py."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from starlette.testclient import TestClient

from sessionmem.http.app import create_app
from sessionmem.web.auth import Links, Signer
from sessionmem.web.views import chart, snippet_parts

XSS = '<img src=x onerror=alert(1)>'
SCRIPT = "</script><script>alert('x')</script>"
ATTR = '"><svg onload=alert(1)>'


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


class Browser:
    """A TestClient with a cookie jar: one person's browser."""

    def __init__(self, app: Any, base: str = "http://testserver"):
        self.client = TestClient(app, base_url=base, follow_redirects=False)

    def sign_in(self, key: str) -> Any:
        token = _csrf(self.client.get("/ui/signin").text)
        return self.client.post("/ui/signin", data={"api_key": key, "csrf": token})

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.client.post(path, **kw)


@pytest.fixture
def site(
    tmp_path: Path, engine_factory: Callable[[Path], Any]
) -> Iterator[tuple[Any, Any, dict[str, str]]]:
    store = engine_factory(tmp_path / ".memory")
    keys = {u: store.keys().create(u)[1] for u in ("alice", "bob")}
    app = create_app(store)
    with TestClient(app):  # the lifespan: started and stopped like a server
        yield app, store, keys


def test_every_page_needs_sign_in(site: Any) -> None:
    app, _store, _keys = site
    b = Browser(app)
    for path in ("/ui/", "/ui/rows", "/ui/search?q=x", "/ui/s/s1", "/ui/s/s1/v/1",
                 "/ui/s/s1/diff", "/ui/s/s1/delete", "/ui/s/s1/forget"):  # fmt: skip
        r = b.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/ui/signin", path
    r = b.get("/ui/rows", headers={"HX-Request": "true"})  # htmx: told where to go instead
    assert r.status_code == 401 and r.headers["hx-redirect"] == "/ui/signin"
    assert b.get("/ui/events").status_code == 401
    assert b.get("/ui").status_code in (301, 307)  # the slash is added
    page = b.get("/ui/signin")
    assert page.status_code == 200
    assert '<label for="api_key">API key</label>' in page.text and 'name="api_key"' in page.text


def test_sign_in_with_a_key_then_out(site: Any) -> None:
    app, store, keys = site
    store.save("alice", {"session_id": "s1", "open_tasks": ["write the parser"]})
    b = Browser(app)
    wrong = b.sign_in("smk_" + "x" * 40)
    assert wrong.status_code == 401 and "not known here" in wrong.text
    assert "smk_" + "x" * 40 not in wrong.text  # a typed key is never shown back
    r = b.sign_in(keys["alice"])
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("sessionmem_ui="))
    attrs = cookie.lower()
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/ui" in attrs
    assert "max-age=43200" in attrs and "secure" not in attrs  # plain HTTP here: no Secure
    home = b.get("/ui/")
    assert home.status_code == 200 and 'data-session-id="s1"' in home.text
    for page in (home, b.get("/ui/s/s1"), b.get("/ui/s/s1/v/1")):
        assert keys["alice"] not in page.text  # the key is never in a page after sign-in
        assert keys["alice"] not in str(page.headers)
    # Signing out is a form too: without its token it changes nothing.
    assert b.post("/ui/signout", data={}).status_code == 403
    assert b.get("/ui/").status_code == 200
    out = b.post("/ui/signout", data={"csrf": _csrf(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
    assert b.get("/ui/").headers.get("location") == "/ui/signin"


def test_the_cookie_is_secure_over_tls(site: Any) -> None:
    app, _store, keys = site
    r = Browser(app, "https://testserver").sign_in(keys["alice"])
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("sessionmem_ui="))
    assert "secure" in cookie.lower()


def test_forms_that_change_something_need_the_csrf_token(site: Any) -> None:
    app, store, keys = site
    store.save("alice", {"session_id": "keep", "open_tasks": ["still here"]})
    b, other = Browser(app), Browser(app)
    b.sign_in(keys["alice"])
    other.sign_in(keys["alice"])
    confirm = b.get("/ui/s/keep/delete")
    assert confirm.status_code == 200 and "Delete session keep?" in confirm.text
    theirs = _csrf(other.get("/ui/s/keep/delete").text)  # another browser's token
    for data in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": theirs}):
        assert b.post("/ui/s/keep/delete", data=data).status_code == 403
        assert b.post("/ui/s/keep/forget", data=data).status_code == 403
    assert store.get("alice", "keep").session_data["open_tasks"] == ["still here"]
    # The header htmx would send works as the field does.
    done = b.post("/ui/s/keep/delete", headers={"X-CSRF-Token": _csrf(confirm.text)})
    assert done.status_code == 200 and "Deleted session keep (1 version hidden)" in done.text
    assert b.get("/ui/s/keep").status_code == 404
    # Signing in is protected the same way (login CSRF).
    fresh = Browser(app)
    fresh.get("/ui/signin")
    assert fresh.post("/ui/signin", data={"api_key": keys["alice"]}).status_code == 403


def test_forget_from_the_page_erases_the_session(site: Any) -> None:
    app, store, keys = site
    store.save("alice", {"session_id": "gone", "open_tasks": ["a secret-ish task"]})
    store.save("alice", {"session_id": "gone", "open_tasks": ["another"]})
    b = Browser(app)
    b.sign_in(keys["alice"])
    confirm = b.get("/ui/s/gone/forget")
    assert "cannot be undone" in confirm.text
    done = b.post("/ui/s/gone/forget", data={"csrf": _csrf(confirm.text)})
    assert done.status_code == 200 and "2 events erased" in done.text
    assert b.get("/ui/s/gone").status_code == 404
    assert not store.search("alice", "secret").items


def test_stored_strings_are_text(site: Any) -> None:
    app, store, keys = site
    store.save("alice", {"session_id": "x1", "open_tasks": [XSS, SCRIPT],
                         "key_decisions": [ATTR], "project_path": ATTR, "git_branch": XSS,
                         "metadata": {"agent": SCRIPT, "parent_session": "p1",
                                      "note": XSS}})  # fmt: skip
    store.save("alice", {"session_id": "x1", "open_tasks": [XSS], "git_commit": SCRIPT})
    b = Browser(app)
    b.sign_in(keys["alice"])
    pages = [b.get(p) for p in ("/ui/", "/ui/s/x1", "/ui/s/x1/v/1", "/ui/s/x1/v/2",
                                "/ui/s/x1/diff?from=1&to=2", "/ui/search?q=img",
                                "/ui/search?q=" + XSS)]  # fmt: skip
    for page in pages:
        assert page.status_code == 200, page.text
        for raw in (XSS, SCRIPT, ATTR, "<svg onload", "<img"):
            assert raw not in page.text, (page.url, raw)
    assert str(escape(XSS)) in pages[2].text  # shown, as text
    assert str(escape(SCRIPT)) in pages[4].text  # in the diff too (git_commit changed)


def test_another_users_session_is_a_404(site: Any) -> None:
    app, store, keys = site
    store.save("bob", {"session_id": "bobs", "open_tasks": ["bob's private task"]})
    b = Browser(app)
    b.sign_in(keys["alice"])
    for path in ("/ui/s/bobs", "/ui/s/bobs/v/1", "/ui/s/bobs/diff", "/ui/s/bobs/delete"):
        r = b.get(path)
        assert r.status_code == 404 and "private" not in r.text, path
    token = _csrf(b.get("/ui/").text)
    assert b.post("/ui/s/bobs/delete", data={"csrf": token}).status_code == 404
    assert b.post("/ui/s/bobs/forget", data={"csrf": token}).status_code == 404
    assert 'data-session-id="bobs"' not in b.get("/ui/").text
    assert "Nothing matches" in b.get("/ui/search?q=private").text
    assert store.get("bob", "bobs").version == 1


def test_a_revoked_key_ends_the_session(site: Any) -> None:
    app, store, keys = site
    b = Browser(app)
    b.sign_in(keys["bob"])
    assert b.get("/ui/").status_code == 200
    store.keys().revoke(keys["bob"])
    deadline = time.monotonic() + 5  # (the file engine looks at keys.json twice a second)
    while b.get("/ui/").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b.get("/ui/").headers.get("location") == "/ui/signin"


def test_a_sign_in_link_works_once(site: Any) -> None:
    app, store, _keys = site
    store.save("alice", {"session_id": "s1", "open_tasks": ["t"]})
    b = Browser(app)
    token = app.state.ui_links.make("alice")
    landed = b.get(f"/ui/signin?token={token}")
    assert landed.status_code == 200 and "Signed in as alice" in landed.text
    assert 'http-equiv="refresh"' in landed.text  # a same-site step, so the Strict cookie goes
    assert 'data-session-id="s1"' in b.get("/ui/").text
    again = Browser(app).get(f"/ui/signin?token={token}")
    assert again.status_code == 401 and "used already or has expired" in again.text
    assert Browser(app).get("/ui/signin?token=nonsense").status_code == 401


def test_every_answer_carries_the_security_headers(site: Any) -> None:
    app, store, keys = site
    store.save("alice", {"session_id": "s1"})
    b = Browser(app)
    b.sign_in(keys["alice"])
    for path in ("/ui/signin", "/ui/", "/ui/s/s1", "/ui/static/vendor/htmx.min.js",
                 "/ui/static/app.css", "/ui/s/nope"):  # fmt: skip
        h = b.get(path).headers
        csp = h["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
    page = b.get("/ui/").text
    assert "<script>" not in page and " on" + "click=" not in page  # nothing inline
    assert b.get("/ui/").headers["cache-control"] == "no-store"


def test_the_timeline_diff_and_version_pages(site: Any) -> None:
    app, store, keys = site
    store.save("alice", {"session_id": "t1", "open_tasks": ["a", "b"], "git_branch": "main",
                         "metadata": {"agent": "claude-code"}})  # fmt: skip
    store.save("alice", {"session_id": "t1", "event": "pre_compact", "open_tasks": ["b", "c"],
                         "git_branch": "feature", "git_commit": "0123456789abcdef0123",
                         "metadata": {"agent": "codex", "parent_session": "t0",
                                      "compaction": {"count": 2}}})  # fmt: skip
    b = Browser(app)
    b.sign_in(keys["alice"])
    page = b.get("/ui/s/t1").text
    assert page.index('data-version="2"') < page.index('data-version="1"')  # newest first
    assert "agent codex" in page and "branch feature" in page and "0123456789ab" in page
    assert "after compaction 2" in page and 'href="/ui/s/t0"' in page
    assert 'href="/ui/s/t1/diff?from=1&amp;to=2"' in page and 'href="/ui/s/t1/v/1"' in page
    diff = b.get("/ui/s/t1/diff?from=1&to=2").text
    assert "<ins>c</ins>" in diff and "<del>a</del>" in diff and "<ins>b</ins>" not in diff
    assert re.search(r"<dt>git_branch</dt><dd><del><pre>main</pre></del> → <ins><pre>feature", diff)
    assert b.get("/ui/s/t1/diff?from=9").status_code == 404
    assert b.get("/ui/s/t1/diff?from=x").status_code == 400
    version = b.get("/ui/s/t1/v/1").text
    assert "Version 1 <small>of 2</small>" in version and "<li>a</li>" in version
    assert b.get("/ui/s/t1/v/3").status_code == 404


def test_lists_are_paged_and_filtered(site: Any) -> None:
    app, store, keys = site
    for n in range(55):
        store.save("alice", {"session_id": f"s{n:02d}", "git_branch": "main" if n % 2 else "dev",
                             "event": "session_end" if n == 7 else "checkpoint"})  # fmt: skip
    for n in range(2, 57):
        store.save("alice", {"session_id": "long", "open_tasks": [f"task {n}"]})
    b = Browser(app)
    b.sign_in(keys["alice"])
    first = b.get("/ui/").text
    assert first.count("data-session-id=") == 50 and "Older sessions" in first
    nxt = re.search(r'href="(/ui/\?cursor=[^"]+)"', first)
    assert nxt and b.get(html.unescape(nxt.group(1))).text.count("data-session-id=") == 6
    dev = b.get("/ui/?git_branch=dev").text
    assert dev.count("data-session-id=") == 28 and 'data-session-id="s01"' not in dev
    assert b.get("/ui/?event=session_end").text.count("data-session-id=") == 1
    assert b.get("/ui/?event=nonsense").status_code == 400
    timeline = b.get("/ui/s/long").text
    assert timeline.count("data-version=") == 50 and "Older versions" in timeline
    assert "55 saves in all" not in first and f"{55 + 55} in all" in first  # the chart


def test_search_finds_and_links_to_the_version(site: Any) -> None:
    app, store, keys = site
    store.save("alice", {"session_id": "q1", "key_decisions": ["use tomllib for config"]})
    b = Browser(app)
    b.sign_in(keys["alice"])
    r = b.get("/ui/search?q=tomllib", headers={"HX-Request": "true"})
    assert '<a href="/ui/s/q1/v/1">' in r.text and "<mark>tomllib</mark>" in r.text
    assert "Nothing matches" in b.get("/ui/search?q=zzzzqqq").text
    assert b.get("/ui/search?q=%22unclosed").status_code == 400  # the query's own rule


# --- properties --------------------------------------------------------------------------------


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_cookie_value_is_a_visitor_or_nothing(value: str) -> None:
    signer = Signer(b"k" * 32)
    assert signer.visitor(value) is None
    good = signer.session("alice", "abc")
    assert signer.visitor(good) is not None
    assert signer.visitor(good + value[:1]) is None or value[:1] == ""
    assert Signer(b"j" * 32).visitor(good) is None  # another memory's secret
    assert signer.visitor(good, now=time.time() + 13 * 3600) is None  # expired


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_links_redeem_only_their_own_token(value: str) -> None:
    links = Links()
    token = links.make("alice")
    assert links.redeem(value) is None or value == token


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[str] = []
        self._in_li = False
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.add(tag)
        self._in_li = tag == "li"
        if self._in_li:
            self.items.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_li = False if tag == "li" else self._in_li

    def handle_data(self, data: str) -> None:
        if self._in_li:
            self.items[-1] += data


_printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80)


@given(st.lists(_printable, min_size=1, max_size=5))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_stored_text_comes_back_as_that_text(tmp_path_factory: Any, tasks: list[str]) -> None:
    """Whatever a task holds, the version page shows exactly it, and never adds an element."""
    from sessionmem import Store

    store = Store(tmp_path_factory.mktemp("w") / ".memory", redactor=None)
    key = store.keys().create("alice")[1]
    store.save("alice", {"session_id": "p", "open_tasks": tasks})
    b = Browser(create_app(store))
    b.sign_in(key)
    page = b.get("/ui/s/p/v/1").text
    parsed = _Text()
    parsed.feed(page)
    shown = [x for x in parsed.items if x in tasks]
    assert shown == tasks
    assert parsed.tags <= {"html", "head", "meta", "title", "link", "script", "body", "a",
                           "header", "nav", "form", "input", "span", "button", "main", "p",
                           "h1", "small", "time", "code", "section", "h2", "ul", "li", "dl",
                           "dt", "dd", "pre"}  # fmt: skip


def test_snippets_and_the_chart() -> None:
    assert snippet_parts("use [tomllib] for [config]") == [
        ("use ", False), ("tomllib", True), (" for ", False), ("config", True)]
    odd = snippet_parts("[] and [x")
    assert "".join(t for t, _ in odd) == "[] and [x" and not any(hit for _, hit in odd)
    day = 86_400_000
    now = 20_000 * day + 5
    c = chart({20_000: 4, 19_999: 2, 19_000: 50}, now)  # a day outside the 30 is not shown
    assert (c.total, c.peak, len(c.bars)) == (6, 4, 30)
    assert c.bars[-1].saves == 4 and c.bars[-2].saves == 2 and c.bars[-1].height > c.bars[-2].height
    assert chart({}, now).total == 0


def test_versions_read_at_once_are_the_versions(site: Any) -> None:
    """`Engine.versions` (the timeline's read): the same snapshots as one `get` each, on every
    engine; a version the session lacks is a 404, another user's session too."""
    from sessionmem import NotFound

    _app, store, _keys = site
    for n in range(3):
        store.save("alice", {"session_id": "v", "open_tasks": [f"t{n}"]})
    assert store.versions("alice", "v", [3, 1, 2]) == [
        store.get("alice", "v", version=k) for k in (3, 1, 2)]
    for user, numbers in (("alice", [1, 9]), ("bob", [1])):
        with pytest.raises(NotFound):
            store.versions(user, "v", numbers)


def test_damaged_keys_or_secret_are_a_page_not_a_traceback(tmp_path: Path) -> None:
    """keys.json or the page's secret damaged: every page says so (503), none is a 500."""
    from sessionmem import Store

    store = Store(tmp_path / ".memory")
    store.save("alice", {"session_id": "s1"})
    key = store.keys().create("alice")[1]
    app = create_app(store)
    b = Browser(app)
    b.client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    b.sign_in(key)
    token = _csrf(b.get("/ui/").text)
    (tmp_path / ".memory" / ".local" / "keys.json").write_text("{broken")
    time.sleep(0.6)  # (the file is looked at again twice a second)
    for r in (b.get("/ui/"), b.get("/ui/events")):
        assert r.status_code == 503, r.text[:200]
    # Signing in still checks the key against the keys last read, as the API does (keys.KeyRing)
    assert b.post("/ui/signin", data={"api_key": key, "csrf": token}).status_code == 303
    secret = tmp_path / ".memory" / ".local" / "secrets" / "ui"
    secret.write_text("not hex")
    fresh = TestClient(create_app(store), raise_server_exceptions=False, follow_redirects=False)
    r = fresh.get("/ui/")
    assert r.status_code == 503 and "is damaged" in r.text and str(secret) in r.text
    assert fresh.post("/ui/signin", data={"api_key": key, "csrf": "x"}).status_code == 503
