"""The README's first screen runs here, so it can never lie (STYLE habit 11).

Its console blocks are run in order against one real server and one memory folder; outputs are
compared with ids, keys and times masked. Its Python block is run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import REPO, sessionmem_cmd

MASKS = [
    (re.compile(r"smk_[A-Za-z0-9_-]{43}"), "<key>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "<time>"),
    (re.compile(r"\(id [0-9a-f]{12}\)"), "(id <id>)"),
    (re.compile(r"key [0-9a-f]{12} for"), "key <id> for"),
]


def mask(text: str) -> list[str]:
    for pattern, repl in MASKS:
        text = pattern.sub(repl, text)
    return [line.rstrip() for line in text.strip().splitlines()]


def blocks(kind: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


def _complete(cmd: str) -> bool:
    try:
        shlex.split(cmd)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def commands(block: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    out: list[tuple[str, str]] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), lines[i]
        cmd = lines[i][2:]
        while cmd.endswith("\\") or not _complete(cmd):
            i += 1
            cmd += "\n" + lines[i]  # bash reads backslash-newline and open quotes as we do
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        out.append((cmd, "\n".join(expected)))
    return out


def test_readme_runs(tmp_path: Path, serve) -> None:
    root = tmp_path / ".memory"
    env = {
        **os.environ,
        "SESSIONMEM_ROOT": str(root),
        "SESSIONMEM_USER": "dev@example.com",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    first, cli = blocks("console")
    server = None
    for cmd, expected in commands(first):
        if cmd == "scripts/serve &":
            server = serve(root, env={"SESSIONMEM_USER": "dev@example.com"})
            got = "".join(server.proc.stdout.readline() for _ in range(3))
        else:
            assert server is not None
            cmd = cmd.replace("127.0.0.1:8765", f"127.0.0.1:{server.port}")
            cmd = cmd.replace(".venv/bin/sessionmem", " ".join(sessionmem_cmd()))
            if cmd.startswith("KEY="):
                inner = cmd[len("KEY=$(") : -1]
                res = subprocess.run(inner, shell=True, env=env, capture_output=True, text=True)
                env["KEY"] = res.stdout.strip()
                got = res.stderr
            else:
                res = subprocess.run(
                    cmd, shell=True, env=env, capture_output=True, text=True, executable="/bin/bash"
                )
                got = res.stdout
        assert mask(got) == mask(expected), cmd
    (py,) = blocks("python")
    code = py.replace("http://127.0.0.1:8765", server.base)  # type: ignore[union-attr]
    res = subprocess.run([sys.executable, "-c", code], env={**env}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    expected = [line[2:] for line in py.splitlines() if line.startswith("# ")]
    assert res.stdout.splitlines() == expected
    for cmd, expected in commands(cli):
        argv = cmd.split()
        res = subprocess.run(
            [*sessionmem_cmd(), *argv[1:]], env=env, capture_output=True, text=True
        )
        assert mask(res.stdout) == mask(expected), cmd
