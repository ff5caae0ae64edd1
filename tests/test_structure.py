"""The shape of the package: modules load without an import cycle, and none grows past our
~500-line habit without saying why at its top."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "sessionmem"
LIMIT = 520
REASON = "past our ~500-line habit"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """The package's modules that `path` imports when it is loaded (module level, outside
    `if TYPE_CHECKING:`); imports inside functions run later and cannot deadlock a load."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("sessionmem"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sessionmem")}
    return found


def test_no_import_cycle() -> None:
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph = {m: sorted(_runtime_imports(p) & modules.keys() - {m}) for m, p in modules.items()}
    assert "sessionmem.write" in graph["sessionmem.store"]  # the graph is read at all
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                cycles.append([*trail[trail.index(n) :], n] if n in trail else [m, n])
            elif n not in state:
                visit(n, [*trail, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_long_modules_say_why() -> None:
    long = {
        p.relative_to(SRC).as_posix(): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > LIMIT
        and REASON not in (ast.get_docstring(ast.parse(p.read_text())) or "").lower()
    }
    assert not long, long
