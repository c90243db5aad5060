"""The package's structure: imports run one way, from a higher layer to a lower one, and
never in a circle -- module-level and function-level imports alike (an import deferred into
a function is still a dependency).

Layers, lowest first (docs/architecture.md):
  base      ising_qubo.{io, qubo, lowrank, scaling, devices, _extras, _progress}
  solvers   ising_qubo.solvers                       (may use base)
  bench     ising_qubo.bench                         (may use solvers, base)
  nets      ising_qubo.nets: knows nothing of Ising  (may use base only)
  pruning   ising_qubo.pruning                       (may use nets, bench-free backend)
  cli       ising_qubo.cli, ising_qubo.__main__      (may use everything)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ising_qubo"

BASE = ("io", "qubo", "lowrank", "scaling", "devices", "_extras", "_progress")
ALLOWED = {  # wing -> wings it may import (itself always)
    "base": {"base"},
    "solvers": {"base"},
    "bench": {"solvers", "base"},
    "nets": {"base"},
    "pruning": {"nets", "solvers", "base"},
    "cli": {"pruning", "nets", "bench", "solvers", "base", "root"},  # root: __version__
    "root": {"solvers", "base"},  # ising_qubo/__init__.py: the rest is loaded lazily by name
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def wing(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    head = parts[1]
    if head in BASE:
        return "base"
    if head == "__main__":
        return "cli"
    return head


def resolve(module: str, name: str | None) -> str | None:
    """The package module an import names: ``from pkg import sub`` is the submodule."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def imports_of(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [(base, alias.name) for alias in node.names]
        else:
            continue
        for target, name in targets:
            if target == "ising_qubo" or target.startswith("ising_qubo."):
                resolved = resolve(target, name)
                if resolved and resolved != module:
                    found.add(resolved)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_graph_sees_the_package():
    assert len(GRAPH) > 40
    assert "ising_qubo.solvers.registry" in GRAPH["ising_qubo.solvers"]
    assert "ising_qubo.nets.models" in GRAPH["ising_qubo.nets.persist"]
    assert "ising_qubo.lowrank" in GRAPH["ising_qubo.solvers.budgeted"]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_run_down_the_layers(module):
    own = wing(module)
    bad = sorted(t for t in GRAPH[module] if wing(t) != own and wing(t) not in ALLOWED[own])
    assert not bad, f"{module} ({own}) imports a higher or foreign layer: {bad}"


def test_a_foreign_import_would_be_found(monkeypatch):
    monkeypatch.setitem(
        GRAPH,
        "ising_qubo.nets.persist",
        GRAPH["ising_qubo.nets.persist"] | {"ising_qubo.solvers.registry"},
    )
    with pytest.raises(AssertionError, match="higher or foreign layer"):
        test_imports_run_down_the_layers("ising_qubo.nets.persist")


def test_no_import_cycles():
    # Tarjan's strongly connected components over every explicit import
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in GRAPH.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_a_cycle_would_be_found(monkeypatch):
    """The checker itself can fail: a back edge makes a cycle it reports."""
    monkeypatch.setitem(
        GRAPH, "ising_qubo.lowrank", GRAPH["ising_qubo.lowrank"] | {"ising_qubo.solvers.budgeted"}
    )
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles()


def test_importing_the_package_loads_no_torch_but_reaches_submodules():
    code = (
        "import sys, ising_qubo as iq; assert 'torch' not in sys.modules; "
        "iq.io.formats(); iq.solvers.list_solvers(); assert 'torch' not in sys.modules; "
        "print(type(iq.models.build('resnet20')).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CifarResNet"
