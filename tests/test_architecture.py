"""The shape of the package stays as the README draws it.

Checked from the source alone (``ast``, nothing is imported): the layers of
ARCHITECTURE.md (each folder imports only what that page allows), and:

- no import cycle between modules of ``scanner``, counting imports inside functions
  too (a function-level import only hides a cycle from the interpreter, not from a
  reader); imports under ``if TYPE_CHECKING:`` are for type checkers only and are not
  counted;
- sources come before the engine: no module under ``scanner/sources/`` imports the
  detector (``scanner.engine.detect``): a source hands over text, the engine finds.

Known exceptions that other work in progress removes are listed below by name, so the
test is green meanwhile and any *new* cycle or violation still fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scanner"
DETECTOR = "scanner.engine.detect"

#: Cycles (as the sorted set of their modules) that work still to land removes: none.
KNOWN_CYCLES: set[frozenset[str]] = set()
#: (source module, detector) imports allowed: none (sources hand over text and never
#: run the detector themselves).
KNOWN_SOURCE_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except in ``if TYPE_CHECKING:`` bodies."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` (file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import x``
            # imports mod.
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem
                       for a in node.names]
        for target in targets:
            while target and target not in known:  # ``import a.b.c`` where c is a name
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported(name, path, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _path(edges: dict[str, set[str]], component: frozenset[str]) -> str:
    """One cycle through the component, written ``a -> b -> a``, for the message."""
    start = min(component)
    seen = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for child in sorted(edges[node] & component):
            if child == start:
                return " -> ".join([*seen[node], start])
            if child not in seen:
                seen[child] = [*seen[node], child]
                todo.append(child)
    return ", ".join(sorted(component))


def test_no_import_cycles() -> None:
    edges = graph()
    found = cycles(edges)
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(_path(edges, c) for c in new)
    gone = KNOWN_CYCLES - set(found)
    assert not gone, f"remove from KNOWN_CYCLES, fixed: {sorted(map(sorted, gone))}"


def test_sources_do_not_run_the_detector() -> None:
    edges = graph()
    bad = {(name, DETECTOR) for name, deps in edges.items()
           if name.startswith("scanner.sources.") and DETECTOR in deps}
    assert bad <= KNOWN_SOURCE_VIOLATIONS, f"sources importing the detector: {bad}"
    gone = KNOWN_SOURCE_VIOLATIONS - bad
    assert not gone, f"remove from KNOWN_SOURCE_VIOLATIONS, fixed: {sorted(gone)}"


def test_the_checker_finds_and_names_a_cycle() -> None:
    """A made-up graph: a -> b -> c -> a is one cycle; d only leads into it."""
    fake = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert cycles(fake) == [frozenset({"p.a", "p.b", "p.c"})]
    assert _path(fake, frozenset({"p.a", "p.b", "p.c"})) == "p.a -> p.b -> p.c -> p.a"


def test_import_forms(tmp_path: Path) -> None:
    """Relative, function-level and ``from pkg import module`` imports make edges;
    imports under ``if TYPE_CHECKING:`` do not."""
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..top import thing\n"
        "import scanner.engine.detect\n"
        "if TYPE_CHECKING:\n"
        "    from scanner.rules import Rule\n"
        "def f():\n"
        "    from scanner.engine.b64 import DROP\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {"scanner.engine.sibling", "scanner.engine.detect", "scanner.engine.b64",
             "scanner.top", "scanner.rules"}
    assert imported("scanner.engine.mod", path, known) == {
        "scanner.engine.sibling", "scanner.top", "scanner.engine.detect",
        "scanner.engine.b64"}


def test_one_owner_of_the_literals() -> None:
    """The needles' building blocks are defined in engine/literals.py only: no other
    module assigns a drop table, the gzip marker or a base64 alphabet translation, nor
    calls ``b2a_base64`` to build a needle of its own."""
    from scanner.engine import literals
    from scanner.scrub import _NEEDLES
    from scanner.token import PREFIX

    owner = PACKAGE / "engine" / "literals.py"
    copies = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == owner:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            if isinstance(node, ast.Assign) and any(
                    "DROP" in n or "GZIP_B64" in n for n in names):
                copies.append(f"{module_name(path)}: {names}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "maketrans":
                copies.append(f"{module_name(path)}: maketrans")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "b2a_base64":
                copies.append(f"{module_name(path)}: b2a_base64")
    assert copies == []
    always, _ = literals.needles(PREFIX.encode())
    assert {t.decode() for t, chain in always if chain} == set(_NEEDLES)


RENAMED = [("scanner.redaction", "scanner.scrub"), ("scanner.redact", "scanner.redact_filter")]


def test_the_package_does_not_import_its_deprecated_names() -> None:
    """Shims are for users' code only: the package itself imports the new names."""
    old = {name for name, _ in RENAMED}
    assert {(n, m) for n, deps in graph().items() for m in deps & old} == set()


@pytest.mark.parametrize(("old", "new"), RENAMED)
def test_old_module_names_still_work(old: str, new: str) -> None:
    """Renamed modules keep their old import path, with a DeprecationWarning."""
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is renamed {new}"):
        shim = importlib.import_module(old)
    target = importlib.import_module(new)
    assert shim.__all__
    for name in shim.__all__:
        assert getattr(shim, name) is getattr(target, name)


def test_the_git_entry_point_does_not_import_the_file_entry_point() -> None:
    """Suppression is its own module: the git scan applies it without importing
    :mod:`scanner.scan`, and the file scan still re-exports its names."""
    import scanner.scan
    import scanner.suppress

    edges = graph()
    git_side = [n for n in edges if n == "scanner.gitscan" or n.startswith("scanner.git.")]
    assert git_side
    assert [n for n in git_side if "scanner.scan" in edges[n]] == []
    for name in ("IGNORE_FILE", "filter_findings", "load_fingerprints"):
        assert getattr(scanner.scan, name) is getattr(scanner.suppress, name)


# -- the layers ARCHITECTURE.md draws ---------------------------------------------------

#: Each module's layer, by the longest matching prefix; ``scanner`` itself (the lazy
#: public API) and the deprecated re-export shims belong to no layer.
LAYERS: dict[str, str] = {
    "scanner.token": "core", "scanner.finding": "core", "scanner.errors": "core",
    "scanner.result": "core", "scanner.scrub": "core", "scanner.atomic": "core",
    "scanner.whsec": "core", "scanner.worker": "core",
    "scanner.sources": "sources", "scanner.git": "git", "scanner.engine": "engine",
    "scanner.rules": "rules", "scanner.scan": "library", "scanner.suppress": "library",
    "scanner.hooks": "library", "scanner.redact_filter": "library",
    "scanner.machine_hooks": "library", "scanner.doctor": "library",
    "scanner.report": "report", "scanner.cendis": "cendis",
    "scanner.incidents": "incidents", "scanner.server": "server",
    "scanner.sweep": "sweep", "scanner.sweep.discovery": "discovery",
    "scanner.dev": "dev", "scanner.cli": "cli",
    "scanner.notify": "notify",
}
SHIMS = {"scanner", "scanner.gitscan", "scanner.redaction", "scanner.redact"}
SCANNER_HALF = {"core", "sources", "git", "engine", "rules", "library", "report"}
#: What each layer may import besides itself (ARCHITECTURE.md's "may import" column).
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "sources": {"core", "git"},
    "git": {"core", "sources", "engine", "rules", "library"},
    "engine": {"core"},
    "rules": {"core", "engine"},
    "library": SCANNER_HALF,
    "report": {"core"},
    "cendis": {"core"},
    "incidents": {"core", "cendis"},
    "notify": {"core", "cendis", "incidents"},
    "server": {"core", "cendis", "incidents", "notify"},
    "sweep": SCANNER_HALF | {"cendis", "incidents", "notify", "discovery"},
    "discovery": {"core", "cendis", "sweep"},
    "dev": {"core", "cendis", "incidents", "engine", "rules"},
    "cli": set(LAYERS.values()),
}
#: Single modules a layer may import from a layer it may not otherwise reach.
MAY_IMPORT_MODULE: dict[str, set[str]] = {
    "core": {"scanner.engine.literals"},  # the fixed strings: standard library only
    "engine": {"scanner.sources.origin"},  # the type a source hands over
}


def layer_of(module: str) -> str | None:
    if module in SHIMS:
        return None
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")),
               key=len, default=None)
    assert best is not None, f"{module} has no layer: add it to LAYERS and ARCHITECTURE.md"
    return LAYERS[best]


def test_each_layer_imports_only_what_architecture_md_allows() -> None:
    wrong = []
    for module, deps in sorted(graph().items()):
        layer = layer_of(module)
        if layer is None:
            continue
        for dep in sorted(deps):
            other = layer_of(dep)
            if other is None or other == layer or other in MAY_IMPORT[layer]:
                continue
            if dep in MAY_IMPORT_MODULE.get(layer, set()):
                continue
            wrong.append(f"{module} ({layer}) imports {dep} ({other})")
    assert not wrong, "imports across a boundary ARCHITECTURE.md forbids:\n" + "\n".join(wrong)


def test_every_layer_is_in_architecture_md() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for prefix in LAYERS:
        short = prefix.removeprefix("scanner.").replace(".", "/")
        assert f"`{short}/`" in text or f"`{short}.py`" in text, short


#: The modules that read inputs and hand them over: they never reach the detector, not
#: even through another module.
SOURCES = ("scanner.sources.", "scanner.git.proc", "scanner.git.batch",
           "scanner.git.plumbing", "scanner.git.commits", "scanner.git.objects")


def test_no_source_reaches_the_detector() -> None:
    edges = graph()
    for source in sorted(m for m in edges if m.startswith(SOURCES)):
        seen, todo = {source}, [source]
        while todo:
            for dep in edges[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        assert DETECTOR not in seen, f"{source} reaches the detector"


def test_the_hooks_fast_path_imports_nothing_costly() -> None:
    """The pre-commit hook's quick answer loads only modules that import nothing costly
    at load time (module-level imports: those it pays for)."""
    costly = {"subprocess", "dataclasses", "typing", "re", "tomllib"}
    mods = modules()
    todo, seen = ["scanner.cli.fast_staged"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(mods[name].read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for target in names:
                assert target.split(".")[0] not in costly, f"{name} imports {target}"
                if target in mods:
                    todo.append(target)
                elif isinstance(node, ast.ImportFrom):
                    todo += [f"{target}.{a.name}" for a in node.names
                             if f"{target}.{a.name}" in mods]


@pytest.mark.parametrize(("module", "never"), [
    # The marker check is below the tar reader: it knows the detector, nothing else.
    ("scanner.engine.marks", {"scanner.engine.tars", "scanner.engine.tar_parts",
                              "scanner.engine.scan_input", "scanner.engine.detect"}),
    # The tar reader is handed its splitter (Members.split) and never imports it.
    ("scanner.engine.tars", {"scanner.engine.tar_parts", "scanner.engine.scan_input"}),
    # The splitter sits on the reader; the caller (scan_input) wires the pool in.
    ("scanner.engine.tar_parts", {"scanner.engine.scan_input"}),
])
def test_tar_modules_stay_layered(module: str, never: set[str]) -> None:
    """tars.py was split by what each part does (ARCHITECTURE.md names each): the
    marker check, the tar reader, the split across workers; each imports only what is
    below it, so none of them can grow back into one module through a cycle."""
    mods = modules()
    assert module in mods
    assert f"`{module.rpartition('.')[2]}`" in (ROOT / "ARCHITECTURE.md").read_text(
        encoding="utf-8")
    assert not imported(module, mods[module], set(mods)) & never
