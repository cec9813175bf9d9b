"""The shape of the code, checked statically so it stays: sources (files, git objects,
stdin) come before the engine and never import the detector; the git package and the
engine's input readers have no import cycle. Every import counts, function-level ones
included (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scanner"
#: The modules that read inputs and hand them over: they must not run the detector.
SOURCES = ("scanner.sources.", "scanner.git.proc", "scanner.git.batch",
           "scanner.git.plumbing", "scanner.git.commits", "scanner.git.objects")
DETECTOR = "scanner.engine.detect"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The scanner modules ``name`` imports anywhere in its body."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m in MODULES and m != name}


def _nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, but not what ``if TYPE_CHECKING:`` holds (never imported at run time)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            todo += node.orelse
            continue
        out.append(node)
        todo += ast.iter_child_nodes(node)
    return out


def _reach(start: str) -> dict[str, str]:
    """Every module reachable from ``start``, with the module that first imported it."""
    seen = {start: ""}
    todo = [start]
    while todo:
        here = todo.pop()
        for dep in sorted(_imports(here)):
            if dep not in seen:
                seen[dep] = here
                todo.append(dep)
    return seen


def _path(seen: dict[str, str], end: str) -> str:
    chain = [end]
    while seen[chain[-1]]:
        chain.append(seen[chain[-1]])
    return " -> ".join(reversed(chain))


@pytest.mark.parametrize("source", sorted(m for m in MODULES if m.startswith(SOURCES)))
def test_sources_never_import_the_detector(source: str) -> None:
    seen = _reach(source)
    assert DETECTOR not in seen, f"a source reaches the detector: {_path(seen, DETECTOR)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(
    ("scanner.git", "scanner.sources", "scanner.engine.archives", "scanner.engine.scan_input",
     "scanner.engine.objects"))))
def test_no_import_cycle_through(module: str) -> None:
    for dep in _imports(module):
        seen = _reach(dep)
        assert module not in seen, f"import cycle: {module} -> {_path(seen, module)}"


def test_the_hooks_fast_path_imports_no_subprocess() -> None:
    """The pre-commit hook's quick answer loads only modules that import nothing costly
    at load time (module-level imports: those it pays for)."""
    costly = {"subprocess", "dataclasses", "typing", "re", "tomllib"}
    todo, seen = ["scanner.cli.fast_staged"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(MODULES[name].read_text())
        for node in tree.body:  # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for imported in names:
                assert imported.split(".")[0] not in costly, f"{name} imports {imported}"
                if imported in MODULES:
                    todo.append(imported)
                elif isinstance(node, ast.ImportFrom):
                    todo += [f"{imported}.{a.name}" for a in node.names
                             if f"{imported}.{a.name}" in MODULES]
