"""Screenshots of the web page for docs/ and the README (docs/screenshots/*.png): a demo memory in
a temporary folder, a real `sessionmem serve`, Debian's chromium through Playwright.

    .venv/bin/python scripts/screenshots.py   (after scripts/test has installed everything)
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "screenshots"
CHROMIUM = os.environ.get("SESSIONMEM_CHROMIUM", "/usr/bin/chromium")


def demo(root: Path) -> str:
    from sessionmem import Store

    store = Store(root, redactor=None)
    app = "/home/dev/invoice-app"
    day = [
        ("s-parser", "main", "claude-code", ["Write the config parser", "Document the limits"],
         [], ["src/config.py"], ["pytest -q tests/test_config.py"]),
        ("s-parser", "main", "claude-code", ["Document the limits"],
         ["Use tomllib, no new dependency"], ["src/config.py", "tests/test_config.py"],
         ["pytest -q tests/test_config.py", "ruff check src"]),
        ("s-parser", "main", "claude-code", ["Document the limits", "Benchmark the parser"],
         ["Use tomllib, no new dependency", "Limits are listed in LIMITS.md"],
         ["src/config.py", "tests/test_config.py", "LIMITS.md"],
         ["pytest -q", "ruff check src", "git commit -m 'config parser'"]),
        ("s-export", "feature/csv-export", "codex", ["Stream rows instead of building a list"],
         ["CSV via the csv module, UTF-8 with BOM for Excel"], ["src/export.py"],
         ["pytest -q tests/test_export.py"]),
        ("s-export", "feature/csv-export", "codex", [],
         ["CSV via the csv module, UTF-8 with BOM for Excel", "Stream with a generator"],
         ["src/export.py", "tests/test_export.py"], ["pytest -q", "git push"]),
        ("s-flaky", "main", "gemini-cli", ["Find why test_totals fails on Mondays"],
         ["Freeze time in the totals tests"], ["tests/test_totals.py"], ["pytest -q -k totals"]),
    ]
    for n, (sid, branch, agent, tasks, decisions, files, commands) in enumerate(day):
        meta: dict[str, object] = {"agent": agent}
        if sid == "s-export" and n == 4:
            meta["compaction"] = {"count": 1}
        if sid == "s-flaky":
            meta["parent_session"] = "s-parser"
        store.save("dev", {"session_id": sid, "project_path": app, "git_branch": branch,
                           "git_commit": f"{n:x}3f9c2a1b7e4d", "open_tasks": tasks,
                           "key_decisions": decisions, "files_modified": files,
                           "commands_run": commands, "metadata": meta,
                           "event": "pre_compact" if n == 4 else "checkpoint"})  # fmt: skip
    key = store.keys().create("dev")[1]
    store.close()
    return key


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    os.environ["SESSIONMEM_HOME"] = str(tmp / "home")
    root = tmp / "repo" / ".memory"
    key = demo(root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "sessionmem"
    proc = subprocess.Popen([str(exe), "serve", "--root", str(root), "--port", str(port),
                             "--log-level", "warning"])  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            shots = [
                ("signin", "/ui/signin", 1280, "light", False),
                ("sessions", "/ui/", 1280, "light", True),
                ("timeline", "/ui/s/s-parser", 1280, "light", True),
                ("diff", "/ui/s/s-parser/diff?from=1&to=3", 1280, "light", True),
                ("version", "/ui/s/s-export/v/2", 1280, "light", True),
                ("search", "/ui/", 1280, "light", True),
                ("sessions-375-dark", "/ui/", 375, "dark", True),
                ("timeline-375-dark", "/ui/s/s-export", 375, "dark", True),
            ]
            for name, path, width, scheme, signed in shots:
                context = browser.new_context(base_url=base, color_scheme=scheme,
                                              viewport={"width": width, "height": 800})  # fmt: skip
                page = context.new_page()
                if signed:
                    page.goto("/ui/signin")
                    page.get_by_label("API key").fill(key)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_url("**/ui/")
                page.goto(path)
                if name == "search":
                    page.get_by_role("searchbox").fill("tomllib")
                    page.locator("#results a").first.wait_for()
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                context.close()
                print(f"docs/screenshots/{name}.png")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    assert re.match(r"^/", "/")


if __name__ == "__main__":
    main()
