"""The package's shape: no import cycle among framefill's modules, and no module over about 400 lines without a
reason written at its top.

Imports are read from the source with ``ast`` (nothing is imported): module-level ones, those inside functions
(a function-level import is a cycle put off until the call, not removed) and those under ``if TYPE_CHECKING:``
(they never run, but two modules that need each other's names are still one tangle: the type checker, the reader
and any refactoring see a circle; the shared name belongs in a module below both). A package's ``__init__`` counts
only where a name is taken from it that is not one of its submodules: every module imports its parent package
first, and that is no cycle. Its own ``if TYPE_CHECKING:`` block is left out: there it only declares the names its
``__getattr__`` re-exports on first use (``framefill.load_model``), the package's face to its users, which none
of its modules depends on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "framefill"


def module_names(root: Path) -> dict[str, Path]:
    """``{"framefill.pipeline": path, "framefill.models": path of its __init__, ...}``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, is_package: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth; under ``if TYPE_CHECKING:`` too, but in a package's
    ``__init__`` (its lazy re-exports)."""
    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        children = list(ast.iter_child_nodes(node))
        if is_package and _type_checking_only(node):
            children = list(node.orelse)
        stack.extend(children)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name of what ``node`` imports from (``from . import x`` in ``a.b.c``: ``a.b``)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    parts = parts[:len(parts) - node.level + is_package]
    return ".".join(parts + ([node.module] if node.module else []))


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each framefill module -> the framefill modules it imports anywhere in its source."""
    names = module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path)), path.name == "__init__.py"):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, path.name == "__init__.py", node)
                subs = [f"{base}.{alias.name}" for alias in node.names]
                targets = [sub for sub in subs if sub in names]
                if len(targets) < len(subs):  # a name defined in the module (or package) itself
                    targets.append(base)
            for target in targets:
                while target and target not in names:  # import a.b.c of a module: a.b.c; of a name in it: a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle (``[a, b, ..., a]``) in ``graph``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_framefill_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert {"framefill.pairs", "framefill.windows", "framefill.schedule"} <= graph["framefill.interpolate"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_check_finds_a_cycle_through_a_function_level_import(tmp_path: Path):
    pkg = tmp_path / "framefill"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from typing import TYPE_CHECKING\n__version__ = '1'\n"
                                     "if TYPE_CHECKING:\n    from framefill.d import thing\n")
    (pkg / "a.py").write_text("from framefill.b import thing\n")
    (pkg / "b.py").write_text("thing = 1\n\ndef later():\n    from framefill import c\n")
    (pkg / "c.py").write_text("import framefill.a\n")
    (pkg / "d.py").write_text("from framefill import __version__\nthing = 2\n")
    graph = import_graph(pkg)
    assert graph["framefill"] == set()  # the package's lazy re-exports, declared under TYPE_CHECKING
    assert graph["framefill.d"] == {"framefill"}
    assert find_cycle(graph) == ["framefill.a", "framefill.b", "framefill.c", "framefill.a"]


def test_the_check_finds_a_cycle_through_type_checking_imports(tmp_path: Path):
    """The circle film once had: a config class in the assembly's module, imported back for annotations by the
    parts it configures."""
    pkg = tmp_path / "framefill"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "film.py").write_text("from framefill.parts import Part\n\nclass Config:\n    pass\n")
    (pkg / "parts.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from framefill.film import Config\n\nclass Part:\n    pass\n")
    assert find_cycle(import_graph(pkg)) == ["framefill.film", "framefill.parts", "framefill.film"]


def test_film_config_sits_below_the_parts_it_configures():
    graph = import_graph(PACKAGE)
    for part in ("framefill.models.film", "framefill.models.film_parts", "framefill.models.time_flow"):
        assert "framefill.models.film_config" in graph[part]
    assert graph["framefill.models.film_config"] == set()


MAX_LINES = 400  # STYLE.md: "a module under ~400 lines"


@pytest.mark.parametrize("name", sorted(module_names(PACKAGE)))
def test_long_modules_say_why(name: str):
    source = module_names(PACKAGE)[name].read_text()
    lines = source.count("\n")
    assert lines <= MAX_LINES or "Why this module is long" in (ast.get_docstring(ast.parse(source)) or ""), (
        f"{name} has {lines} lines: split it along its seams, or say at its top why it is one piece "
        "('Why this module is long: ...')")


def test_tools_are_few_and_each_is_named_in_the_readme():
    """tools/ keeps what a maintainer runs again (at most 12 scripts), each in the README's table of tools with what
    it is for; one-off experiments are removed, their figures naming the commit that had them."""
    tools = sorted(p.name for p in (PACKAGE.parent / "tools").iterdir() if p.suffix in (".py", ".sh"))
    table = (PACKAGE.parent / "README.md").read_text().split("| script | what it is for |", 1)[1].split("\n\n", 1)[0]
    assert len(tools) <= 12, tools
    assert [t for t in tools if f"| `{t}` |" not in table] == []
