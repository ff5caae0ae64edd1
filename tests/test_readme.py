"""The README runs verbatim, top to bottom, in a fresh clone, so its first screen cannot lie.

The clone holds this tree's files as git would clone them (tracked, and new files not ignored),
no `.venv`: the README's first command installs it, as it would for a new user. Every console
block and Python block runs in README order in one bash session, as a reader would type them;
each command's output (stdout and stderr, as a terminal shows them) is compared with the README's
with ids, keys, times, process ids and the clone's path masked. Only the port may differ: the
README's 8765 becomes a free port (SESSIONMEM_PORT and the URLs)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, free_port

MASKS = [
    (re.compile(r"smk_[A-Za-z0-9_-]{43}"), "<key>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"), "<clock>"),
    (re.compile(r"\(id [0-9a-f]{12}\)"), "(id <id>)"),
    (re.compile(r"key [0-9a-f]{12} for"), "key <id> for"),
    (re.compile(r"process \d+"), "process <pid>"),
    (re.compile(r"commit `[0-9a-f]{7,40}`"), "commit `<sha>`"),
]
README_CLONE = "/home/dev/sessionmem"


def mask(text: str, clone: Path | None = None) -> list[str]:
    if clone is not None:
        text = text.replace(str(clone), README_CLONE)
    for pattern, repl in MASKS:
        text = pattern.sub(repl, text)
    return [line.rstrip() for line in text.strip().splitlines()]


def blocks() -> list[tuple[str, str]]:
    """(kind, text) of the README's console and Python blocks, in order."""
    text = (REPO / "README.md").read_text()
    return re.findall(r"```(console|python)\n(.*?)```", text, flags=re.S)


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


def fresh_clone(dest: Path) -> Path:
    """This tree as a clone of it would be: tracked files and new ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    return dest


@pytest.mark.slow
def test_the_readme_runs_verbatim_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "sessionmem")
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[user]\n\temail = dev@example.com\n\tname = Dev\n")
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONMEM_", "VIRTUAL_ENV"))}
    env.update({"GIT_CONFIG_GLOBAL": str(gitconfig), "SESSIONMEM_PORT": port})
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr in the order a terminal shows them
    env.pop("CLAUDE_PROJECT_DIR", None)
    # The test's own virtualenv is not the reader's: take it off PATH.
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO / ".venv"))
    )
    subprocess.run(
        ["git", "commit", "-q", "-m", "clone"], cwd=clone, env=env, check=True, capture_output=True
    )

    script: list[str] = []
    expected: list[tuple[str, str]] = []
    python_outputs: list[str] = []
    for kind, text in blocks():
        text = text.replace("8765", port)
        if kind == "console":
            for cmd, want in commands(text):
                script.append(f"printf '\\n@@@ {len(expected)}\\n'\n{cmd}\n")
                expected.append((cmd, want))
        else:
            marker = f"PY{len(expected)}"
            script.append(f"printf '\\n@@@ {len(expected)}\\n'\n")
            script.append(f"python3 - <<'{marker}'\n{text}{marker}\n")
            want = "\n".join(line[2:] for line in text.splitlines() if line.startswith("# "))
            expected.append(("(the Python block)", want))
            python_outputs.append(want)
    try:
        ran = subprocess.run(
            ["bash", "-c", "exec 2>&1\n" + "".join(script)],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
    finally:
        subprocess.run(
            [str(clone / ".venv" / "bin" / "sessionmem"), "serve", "--stop"],
            cwd=clone,
            env=env,
            capture_output=True,
        )
    got = re.split(r"\n@@@ (\d+)\n", ran.stdout + "\n")[1:]
    outputs = {int(got[i]): got[i + 1] for i in range(0, len(got), 2)}
    if os.environ.get("SESSIONMEM_README_SHOW"):  # to refresh the README's real output
        for n, (cmd, _) in enumerate(expected):
            print(f"$ {cmd}\n{outputs.get(n, '')}".replace(str(clone), README_CLONE))
    for n, (cmd, want) in enumerate(expected):
        assert n in outputs, f"never reached: {cmd}\n{ran.stderr}"
        assert mask(outputs[n], clone) == mask(want), cmd
