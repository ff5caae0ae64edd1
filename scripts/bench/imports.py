"""What each import made inside a function would cost at start-up if it moved to the top of its
module: for every one, a fresh interpreter imports the module that holds it, then times that one
import (the best of three). An import inside a function is there only for a cost this measures
(docs/decisions.md, "Start-up"); one under 1 ms is marked `move it up`.

    .venv/bin/python scripts/bench/imports.py
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PROBE = """
import importlib, sys, time
importlib.import_module(sys.argv[1])
t = time.perf_counter()
try:
    importlib.import_module(sys.argv[2])
except ImportError:  # a name, not a module: already there with its module
    pass
print((time.perf_counter() - t) * 1000)
"""


def lazy_imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module imported) of every import inside a function of `path`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                found |= {(inner.lineno, a.name) for a in inner.names}
            elif isinstance(inner, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - inner.level + 1]
                named = [inner.module] if inner.module else []
                target = ".".join(base + named) if inner.level else inner.module or ""
                if inner.module:
                    found.add((inner.lineno, target))
                else:  # from . import a, b: submodules
                    found |= {(inner.lineno, f"{target}.{a.name}") for a in inner.names}
    return sorted(found)


def cost_ms(module: str, target: str) -> float:
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, module, target], capture_output=True, text=True
        )
        runs.append(float(out.stdout.split()[-1]) if out.returncode == 0 else float("nan"))
    return min(runs)


def main() -> None:
    cheap = 0
    for path in sorted((SRC / "sessionmem").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for line, target in lazy_imports(path, module):
            ms = cost_ms(module, target)
            flag = "  move it up" if ms < 1.0 else ""
            cheap += bool(flag)
            print(f"{path.relative_to(SRC)}:{line:<5} {target:<45} {ms:7.2f} ms{flag}")
    print(f"{cheap} lazy import(s) under 1 ms")


if __name__ == "__main__":
    main()
