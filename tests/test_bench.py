"""The benchmark scripts keep working (figures are printed, never asserted: timings are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sessionmem.keys import KeyRing
from sessionmem.layout import Layout

from conftest import REPO

BENCH = REPO / "scripts" / "bench"


def test_bench_quick_sections_run_and_write_json(tmp_path: Path) -> None:
    out_file = tmp_path / "results.json"
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench.py"),
            "--quick",
            "--only",
            "replay",
            "--only",
            "history",
            "--json",
            str(out_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    results = json.loads(out_file.read_text())["results"]
    names = [r["name"] for r in results]
    assert any("replay v1" in n for n in names)
    assert all(r["ours"] > 0 and r["baseline"] > 0 for r in results)
    assert "ratio" in out.stdout.splitlines()[0]


def test_python_load_generator_counts_requests(tmp_path: Path, serve) -> None:
    root = tmp_path / ".memory"
    key = KeyRing(Layout(root)).create("u")[1]
    server = serve(root)
    body = tmp_path / "body.json"
    body.write_text('{"session_id": "s", "open_tasks": ["a"]}')
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / "loadgen.py"),
            server.base + "/api/v1/public/memory/v2/session",
            "1",
            "4",
            "POST",
            str(body),
            f"x-api-key: {key}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 0
