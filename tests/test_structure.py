"""The shape of the package: modules load without an import cycle, and none grows past our
~500-line habit without saying why at its top."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "sessionmem"
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


def test_the_errors_tree_is_the_classes_in_errors_py() -> None:
    """Every exception raised on purpose is defined in errors.py, and its docstring's tree draws
    exactly those classes, each under its parent."""
    import inspect

    import sessionmem.errors as errors

    defined = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls)
        and issubclass(cls, errors.SessionmemError)
        and cls.__module__ == errors.__name__
        and not name.startswith("_")
    }
    tree = [
        (len(m.group(1)), m.group(2))
        for m in re.finditer(r"^( *(?:[│ ]   )*[├└]── |    )(\w+)", errors.__doc__ or "", re.M)
    ]
    drawn = {name for _, name in tree}
    assert drawn == set(defined), (drawn, set(defined))
    stack: list[tuple[int, str]] = []
    for depth, name in tree:
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parent = defined[stack[-1][1]]
            assert defined[name].__bases__[0] is parent, (name, parent)
        stack.append((depth, name))
    # and no module of the library defines one of its own
    for path in SRC.rglob("*.py"):
        if path.name != "errors.py":
            text = path.read_text()
            assert not re.search(
                r"^class \w+\((?:SessionmemError|StorageError|InvalidInput|NotFound)\)", text, re.M
            ), path


_CITE = re.compile(r'docs/([\w.-]+\.md)((?:,\s*"[^"]+"(?:\s*(?:,|and)\s*"[^"]+")*)?)')


def _citations(text: str) -> list[tuple[str, list[str]]]:
    """(document, headings) cited in `text`: `docs/X.md, "Heading"` (a comment or docstring
    may break the heading over lines)."""
    flat = re.sub(r"\s*\n\s*(?:#\s*)?", " ", text)
    return [(m.group(1), re.findall(r'"([^"]+)"', m.group(2))) for m in _CITE.finditer(flat)]


def test_every_docs_citation_resolves() -> None:
    """Code, tests and docs cite docs/ by file and heading; each must exist. Nothing cites a
    document outside the repository."""
    files = [*SRC.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "docs").glob("*.md"),
             ROOT / "README.md", *(ROOT / "scripts").rglob("*.py")]  # fmt: skip
    headings = {
        doc.name: {
            m.group(1).strip() for m in re.finditer(r"^#{1,4}\s+(.+)$", doc.read_text(), re.M)
        }
        for doc in (ROOT / "docs").glob("*.md")
    }
    missing = []
    for path in files:
        if path.name == "test_structure.py":
            continue
        text = path.read_text()
        for doc, cited in _citations(text):
            if doc not in headings:
                if cited or path.parent.name != "tests":  # (tests also name files as data)
                    missing.append(f"{path.name}: docs/{doc}")
                continue
            missing += [f"{path.name}: docs/{doc}, {h!r}" for h in cited if h not in headings[doc]]
        outside = re.findall(r"\b(?:SPEC(?:\.md| §)|STYLE(?:\.md| \d| habit)|AGENT_HOOKS\.md|"
                             r"PLATFORM\.md|\.\./shared)", text)  # fmt: skip
        missing += [f"{path.name}: cites {o!r}, outside the repository" for o in outside]
    assert not missing, missing


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The library modules `module` imports anywhere in its code — at the top or inside a
    function — aside from imports for type checkers only (`if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in node.body
        for n in ast.walk(sub)
    }
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = (
                package.split(".")[: len(package.split(".")) - (node.level - 1)]
                if node.level
                else []
            )
            target = ".".join([*base, *([node.module] if node.module else [])])
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found |= subs or ({target} & known)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & known
    return found - {module}


def test_no_import_circle_even_counting_imports_inside_functions() -> None:
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: _imports(p, m, set(modules)) for m, p in modules.items()}
    circles = []
    for start in graph:  # a path from a module back to itself
        stack, seen = [(start, [start])], set()
        while stack:
            here, trail = stack.pop()
            for nxt in graph[here]:
                if nxt == start:
                    circles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not circles, circles


def test_every_import_inside_a_function_says_what_it_saves() -> None:
    """An import is made inside a function only to keep a measured cost off start-up, and says
    it: a `# lazy: … ms` comment above its block of imports (figures from
    scripts/bench/imports.py; docs/decisions.md, "Start-up")."""
    unexplained = []
    for path in SRC.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if not isinstance(inner, (ast.Import, ast.ImportFrom)):
                    continue
                at = inner.lineno - 2  # walk up over the imports of the same block
                while at >= 0 and re.match(r"\s*(import |from |\w+,$|\)$|$)", lines[at]):
                    at -= 1
                comment = lines[at].strip() if at >= 0 else ""
                if not re.match(r"# lazy\b.*\bms\b", comment):
                    unexplained.append(f"{path.relative_to(SRC)}:{inner.lineno}")
    assert not unexplained, sorted(set(unexplained))
