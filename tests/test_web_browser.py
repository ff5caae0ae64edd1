"""The web page in a real browser (docs/web.md): Debian's chromium driven by Playwright, against
real `sessionmem serve` and `sessionmem ui` processes — sign in, list, filter, a timeline, a diff,
search as you type, a live update from a CLI save (and from another PostgreSQL replica), the XSS
string, another user's session, a form post without its CSRF token, signing out, the keyboard, and
the page at 375 and 1440 pixels wide.

`scripts/test` installs chromium when it is missing; Playwright is never asked to download one
(`playwright install` needs a network this machine does not have)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionmem import Store

from conftest import Postgres, Server, free_port, run_cli, sessionmem_cmd

CHROMIUM = os.environ.get("SESSIONMEM_CHROMIUM", "/usr/bin/chromium")
XSS = "<img src=x onerror=alert(1)>"
WAIT = 15_000  # ms: what a page may take to show a change (generous: CI machines are slow)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: scripts/test installs chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


class Watched:
    """A browser page whose console errors and dialogs (an alert is an XSS) are kept."""

    def __init__(self, browser: Any, base: str, **context: Any):
        self.context = browser.new_context(base_url=base, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def sign_in(self, key: str) -> None:
        self.page.goto("/ui/")
        assert self.page.url.endswith("/ui/signin")  # no page without sign-in
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/ui/")

    def close(self) -> None:
        assert not self.dialogs, self.dialogs
        assert not self.errors, self.errors  # a CSP violation would show here
        self.context.close()


def _memory(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "repo" / ".memory"
    store = Store(root)
    store.save("alice", {"session_id": "s-41", "open_tasks": ["Write the config parser",
                         "Document the limits"], "git_branch": "main",
                         "project_path": "/home/dev/app",
                         "metadata": {"agent": "claude-code"}})  # fmt: skip
    store.save("alice", {"session_id": "s-41", "open_tasks": ["Document the limits"],
                         "key_decisions": ["Use tomllib, no new dependency"],
                         "git_branch": "main", "project_path": "/home/dev/app",
                         "commands_run": ["pytest -q"],
                         "metadata": {"agent": "claude-code"}})  # fmt: skip
    store.save("alice", {"session_id": "s-42", "open_tasks": [XSS], "git_branch": "feature",
                         "project_path": "/home/dev/app", "event": "session_end",
                         "metadata": {"agent": "codex", "parent_session": "s-41"}})  # fmt: skip
    store.save("bob", {"session_id": "bobs", "open_tasks": ["bob's private plan"]})
    keys = {u: store.keys().create(u)[1] for u in ("alice", "bob")}
    store.close()
    return root, keys


def _alice_signed_in(
    tmp_path: Path, serve: type[Server], browser: Any
) -> tuple[Path, Server, Watched]:
    """The demo memory, a server on it, and a browser page signed in as alice."""
    root, keys = _memory(tmp_path)
    server = serve(root)
    w = Watched(browser, server.base)
    w.sign_in(keys["alice"])
    return root, server, w


def test_sign_in_list_filter_timeline_diff_search_and_sign_out(
    tmp_path: Path, serve: type[Server], browser: Any
) -> None:
    root, server, w = _alice_signed_in(tmp_path, serve, browser)
    page = w.page
    rows = page.locator("tr[data-session-id]")
    assert rows.count() == 2 and rows.first.get_attribute("data-session-id") == "s-42"
    assert page.locator("figure.chart svg rect").count() == 30
    assert "3 in all" in page.inner_text("figure.chart")  # alice's saves; bob's is not hers

    page.get_by_label("Branch").fill("main")  # filter
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**git_branch=main**")
    assert [r.get_attribute("data-session-id") for r in rows.all()] == ["s-41"]

    page.get_by_role("link", name="s-41", exact=True).click()  # the timeline
    page.wait_for_url("**/ui/s/s-41")
    versions = page.locator("li[data-version]")
    assert [v.get_attribute("data-version") for v in versions.all()] == ["2", "1"]
    assert "agent claude-code" in versions.first.inner_text()

    page.get_by_role("link", name="Changes from version 1").click()  # the diff
    page.wait_for_url("**/diff?from=1&to=2")
    assert page.locator("del").all_inner_texts() == ["Write the config parser"]
    assert "Use tomllib, no new dependency" in page.locator("ins").all_inner_texts()

    page.goto("/ui/")  # search as you type
    page.get_by_role("searchbox").fill("tomllib")
    hit = page.locator("#results a").first
    hit.wait_for(timeout=WAIT)
    hit.click()
    page.wait_for_url("**/ui/s/s-41/v/2")
    assert "Use tomllib, no new dependency" in page.inner_text("main")

    page.goto("/ui/s/s-42/v/1")  # the XSS string is text
    assert page.get_by_text(XSS, exact=True).is_visible()
    assert page.locator("main img").count() == 0

    answer = page.goto("/ui/s/bobs")  # another user's session
    assert answer is not None and answer.status == 404
    assert "private" not in page.inner_text("body")
    assert w.errors == ["Failed to load resource: the server responded with a status of 404 "
                        "(Not Found)"]  # that page's own status, and nothing else
    w.errors.clear()

    refused = page.request.post(server.base + "/ui/s/s-41/delete", form={})  # no CSRF token
    assert refused.status == 403
    assert Store(root).get("alice", "s-41").version == 2

    page.goto("/ui/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/signin")
    page.goto("/ui/s/s-41")
    assert page.url.endswith("/ui/signin")
    w.close()


def test_a_cli_save_appears_without_a_reload(
    tmp_path: Path, serve: type[Server], browser: Any
) -> None:
    root, server, w = _alice_signed_in(tmp_path, serve, browser)
    page = w.page
    code, _out, err = run_cli("save", "--root", str(root), "--user", "alice", "--session-id",
                              "live-1", "--task", "saved from the shell")  # fmt: skip
    assert code == 0, err
    page.locator('tr[data-session-id="live-1"]').wait_for(timeout=WAIT)
    assert page.locator("tr[data-session-id]").first.get_attribute("data-session-id") == "live-1"

    page.goto("/ui/s/live-1")  # and on an open timeline
    code, _out, err = run_cli("save", "--root", str(root), "--user", "alice", "--session-id",
                              "live-1", "--task", "a second version")  # fmt: skip
    assert code == 0, err
    page.locator('li[data-version="2"]').wait_for(timeout=WAIT)
    w.close()


def test_sessionmem_ui_prints_a_link_that_signs_in_once(tmp_path: Path, browser: Any) -> None:
    root, _keys = _memory(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [*sessionmem_cmd(), "ui", "--root", str(root), "--user", "alice", "--port", str(port),
         "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        link = lines[2].strip()
        assert link.startswith(f"http://127.0.0.1:{port}/ui/signin?token="), lines
        assert "Sign in as alice" in lines[1]
        w = Watched(browser, f"http://127.0.0.1:{port}")
        w.page.goto(link)
        w.page.wait_for_url("**/ui/")  # through the same-site step: the Strict cookie is sent
        assert w.page.locator("tr[data-session-id]").count() == 2
        again = httpx.get(link)
        assert again.status_code == 401  # used up
        # The open page holds a live stream; stopping still takes no longer than a request.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130  # (the exit code of an interrupted command)
        w.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_keyboard_and_narrow_and_wide_screens(
    tmp_path: Path, serve: type[Server], browser: Any
) -> None:
    root, keys = _memory(tmp_path)
    server = serve(root)
    for width, scheme in ((375, "dark"), (1440, "light")):
        w = Watched(browser, server.base, viewport={"width": width, "height": 800},
                    color_scheme=scheme)  # fmt: skip
        page = w.page
        w.sign_in(keys["alice"])
        for path in ("/ui/", "/ui/s/s-41", "/ui/s/s-41/diff?from=1&to=2", "/ui/s/s-42/v/1"):
            page.goto(path)
            fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            assert fits, (width, path)
        page.goto("/ui/")
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "q"
        page.keyboard.press("Escape")
        for _ in range(40):  # Tab reaches the first session's link; Enter opens it
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.closest('tr') !== null"):
                break
        page.keyboard.press("Enter")
        page.wait_for_url("**/ui/s/s-42")
        w.close()


def test_a_save_through_another_replica_appears_live(
    tmp_path: Path, serve: type[Server], browser: Any
) -> None:
    """On PostgreSQL the page hears other replicas through LISTEN/NOTIFY."""
    url = Postgres.database(tmp_path)
    code, out, err = run_cli("keys", "create", "alice", "--database", url)
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    places = [tmp_path / "one", tmp_path / "two"]
    for place in places:
        place.mkdir()
    one, two = (serve(p, "--database", url) for p in places)
    w = Watched(browser, one.base)
    w.sign_in(key)
    saved = httpx.post(two.base + "/api/v1/public/memory/v2/session", headers={"x-api-key": key},
                       json={"session_id": "from-two", "open_tasks": ["via replica two"]})
    assert saved.status_code == 201, saved.text
    w.page.locator('tr[data-session-id="from-two"]').wait_for(timeout=WAIT)
    w.close()


def test_real_transcripts_through_the_hooks_read_well_on_the_page(
    tmp_path: Path, serve: type[Server], browser: Any
) -> None:
    """What an agent's hooks save from real transcripts (data/transcripts/, see its NOTICE.md),
    shown on every page with no console error — long paths, commands and tasks included."""
    import json

    from conftest import REPO

    root = tmp_path / "repo" / ".memory"
    Store(root).close()
    env = {**os.environ, "SESSIONMEM_ROOT": str(root), "SESSIONMEM_USER": "alice"}
    runs = [
        ("claude-code", "SessionEnd", REPO / "data/transcripts/claude/session-9eda1058.jsonl"),
        ("claude-code", "SessionEnd", REPO / "data/transcripts/claude/session-196820da.jsonl"),
        ("codex", "Stop", next((REPO / "data/transcripts/codex").glob("rollout-*.jsonl"))),
    ]
    for n, (agent, event, transcript) in enumerate(runs):
        payload = {"hook_event_name": event, "session_id": f"real-{n}", "cwd": str(tmp_path),
                   "transcript_path": str(transcript)}  # fmt: skip
        done = subprocess.run([*sessionmem_cmd(), "hook", agent], input=json.dumps(payload),
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
    store = Store(root)
    sessions = [s.session_id for s in store.sessions("alice").items]
    assert len(sessions) == 3, sessions
    key = store.keys().create("alice")[1]
    store.close()
    server = serve(root)
    for width in (375, 1440):
        w = Watched(browser, server.base, viewport={"width": width, "height": 900})
        w.sign_in(key)
        assert w.page.locator("tr[data-session-id]").count() == 3
        for sid in sessions:
            for path in (f"/ui/s/{sid}", f"/ui/s/{sid}/v/1"):
                w.page.goto(path)
                assert w.page.evaluate(
                    "document.documentElement.scrollWidth <= window.innerWidth"
                ), (width, path)
            assert w.page.locator("section.field li").count() > 0  # the work, shown
        w.close()
