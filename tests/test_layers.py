"""The house's layers, read from the source: every import of every module, parsed with ``ast``.

hardware_specs (ground floor) imports none of ours; simulators import only hardware_specs;
costmodel sits on top; kernels import nothing of ours. No cycle between the packages nor
between files (imports inside functions count: a lazy import is still a dependency); no
source file over 450 lines; no ``except ImportError`` around an import of our own modules
(a broken module must fail loudly, not drop a feature).
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hardware_specs", "simulators", "costmodel", "kernels")
# package -> the packages of ours it may import (besides itself)
ALLOWED = {
    "hardware_specs": set(),
    "simulators": {"hardware_specs"},
    "costmodel": {"hardware_specs", "simulators", "kernels"},
    "kernels": set(),
}
MAX_LINES = 450
SOURCE_DIRS = PACKAGES + ("examples", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _our_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _our_modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(name: str, importer: str) -> str | None:
    """The module of ours that ``name`` (absolute, dotted) is, or None when it is not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    while name and name not in MODULES:  # an attribute of a module: walk up to the module
        name = name.rpartition(".")[0]
    if not name:
        raise AssertionError(f"{importer}: imports {name!r}, which is no module of ours")
    return name


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported module of ours, line, guarded by ``except ImportError``) for each import in ``module``."""
    return imports_in(MODULES[module].read_text(), module, _is_package(module))


def imports_in(text: str, module: str, is_package: bool = False) -> list[tuple[str, int, bool]]:
    """The same for source ``text`` read as module ``module``."""
    tree = ast.parse(text)
    package = module if is_package else module.rpartition(".")[0]
    guarded_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for inner in node.body:
                guarded_lines |= {n.lineno for n in ast.walk(inner) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from a.b import c``: the module a.b.c where c is one, else a.b itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for t in targets:
            resolved = _resolve(t, module)
            if resolved is not None and resolved != module:
                out.append((resolved, node.lineno, node.lineno in guarded_lines))
    return out


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = {"ImportError", "ModuleNotFoundError"}
    t = handler.type
    if t is None:
        return True
    elts = t.elts if isinstance(t, ast.Tuple) else [t]
    return any(isinstance(e, ast.Name) and e.id in names for e in elts)


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(MODULES)
    for m in MODULES:
        for target, line, _ in imports_of(m):
            g.add_edge(m, target, line=line)
    return g


def test_the_layer_rules_hold():
    upward = [f"{MODULES[m].relative_to(ROOT)} imports {t} ({m.split('.')[0]} may import "
              f"{', '.join(sorted(ALLOWED[m.split('.')[0]])) or 'nothing of ours'})"
              for m in MODULES for t in upward_imports(m, imports_of(m))]
    assert not upward, "\n".join(upward)


def test_no_cycle_between_packages(graph):
    packages = nx.DiGraph()
    packages.add_nodes_from(PACKAGES)
    packages.add_edges_from((a.split(".")[0], b.split(".")[0]) for a, b in graph.edges
                            if a.split(".")[0] != b.split(".")[0])
    assert nx.is_directed_acyclic_graph(packages), nx.find_cycle(packages)


def test_no_cycle_between_files(graph):
    cycles = [c for c in nx.simple_cycles(graph)]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:5])


def test_no_import_of_ours_behind_except_import_error():
    guarded = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
               for m in MODULES for t, line, g in imports_of(m) if g]
    assert not guarded, "\n".join(guarded)


def test_no_source_file_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for d in SOURCE_DIRS for p in sorted((ROOT / d).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def upward_imports(module: str, imports) -> list[str]:
    pa = module.split(".")[0]
    return [t for t, _, _ in imports if t.split(".")[0] != pa and t.split(".")[0] not in ALLOWED[pa]]


def test_the_checks_see_a_violation():
    """The parser itself, on made-up modules: relative imports resolve, ``from pkg import module``
    finds the module, a lazy import inside a function counts, and a guarded one is seen."""
    text = ("from . import standard\nfrom .config import make_config\n"
            "def f():\n    from costmodel.flops import matmul_params\n"
            "try:\n    import kernels.api\nexcept (ImportError, OSError):\n    pass\n")
    found = imports_in(text, "simulators.made_up")
    assert [t for t, _, _ in found] == ["simulators.standard", "simulators.config", "costmodel.flops", "kernels.api"]
    assert upward_imports("simulators.made_up", found) == ["costmodel.flops", "kernels.api"]
    assert [t for t, _, guarded in found if guarded] == ["kernels.api"]
    assert imports_in("from hardware_specs import load_gpu\n", "kernels.made_up")[0][0] == "hardware_specs"
    assert imports_in("import numpy\nfrom numba import cuda\n", "kernels.made_up") == []
