"""The house plan (README, "Layout of the code"): each unit imports only its
own modules and units of lower rank. Every import counts, also those inside
functions, so a lazy import cannot hide an upward dependency."""
from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("genet_arch", "converters", "torch_ref", "paddle_genet", "parity")

# (unit, rank): a module belongs to the longest unit that prefixes its name.
UNITS = {
    "genet_arch": 0,                                   # the architecture description
    "converters.table": 1,                             # mapping table, checks, BN folding (numpy)
    "converters.files": 2,                             # safe reading, atomic writing
    "torch_ref": 3, "paddle_genet": 3,                 # the two models
    "parity.core": 4,                                  # compare, rule, float64 reference, runtime, output
    "converters.conversion": 5, "parity.inputs": 5,    # conversion + verification; images in
    "parity.fastpath": 6, "parity.layers": 6,          # fast inference paths; the layer diff
    "parity.accuracy": 7, "parity.latency": 7, "parity.training": 7,
    "parity.certificate": 8,
    "parity.commands": 9, "converters.cli": 9,         # the command lines
    # Package roots (a docstring, and `parity.preprocess` for users) and the
    # user-run pytest suite sit on top: nothing in the project imports them.
    "converters": 10, "parity": 10, "parity.conftest": 10, "parity.test_": 11,
}


def unit_of(module: str) -> str:
    best = None
    for unit in UNITS:
        if module == unit or module.startswith(unit + ".") or (unit.endswith("_") and module.startswith(unit)):
            if best is None or len(unit) > len(best):
                best = unit
    if best is None:
        raise KeyError(module)
    return best


def project_modules(root: str = ROOT) -> Dict[str, str]:
    mods = {}
    for pkg in PACKAGES:
        for d, _, files in os.walk(os.path.join(root, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(d, f)
                    name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def imports_of(name: str, path: str, modules) -> Set[str]:
    """Project modules `name` imports anywhere in its file (relative ones resolved)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_pkg = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = (name if is_pkg else name.rsplit(".", 1)[0]).split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = base + ("." + node.module if node.module else "")
            else:
                module = node.module
            targets = [module] + [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in modules]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import a.b.c` of a module reaches a.b.c; of a name, its module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def violations(graph: Dict[str, Set[str]]) -> List[str]:
    """Every import of a unit of the same or higher rank, but another unit."""
    out = []
    for mod, deps in sorted(graph.items()):
        u = unit_of(mod)
        for dep in sorted(deps):
            d = unit_of(dep)
            if d != u and UNITS[d] >= UNITS[u]:
                out.append(f"{mod} (unit {u}, rank {UNITS[u]}) imports {dep} (unit {d}, rank {UNITS[d]})")
    return out


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    mods = project_modules()
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def test_every_module_belongs_to_a_unit_of_the_plan(graph):
    unplaced = []
    for m in graph:
        try:
            unit_of(m)
        except KeyError:
            unplaced.append(m)
    assert not unplaced, f"modules outside the house plan (add their folder to UNITS and the README): {unplaced}"


def test_no_unit_imports_one_of_its_rank_or_above(graph):
    bad = violations(graph)
    assert not bad, "imports against the house plan:\n" + "\n".join(bad)


def test_no_import_cycles(graph):
    assert not cycles(graph)


def test_the_check_finds_an_upward_import_and_a_cycle():
    """The checks above can fail: a planted upward import and a planted cycle are reported."""
    planted = {"converters.files.checkpoint": {"converters.table.errors", "parity.core.compare"},
               "converters.table.errors": set(), "parity.core.compare": set()}
    assert violations(planted) == ["converters.files.checkpoint (unit converters.files, rank 2) imports "
                                   "parity.core.compare (unit parity.core, rank 4)"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_relative_and_lazy_imports_are_seen(tmp_path):
    pkg = tmp_path / "parity" / "core"
    pkg.mkdir(parents=True)
    for p in (tmp_path / "parity" / "__init__.py", pkg / "__init__.py", pkg / "compare.py"):
        p.write_text("")
    (pkg / "seeded.py").write_text("def f():\n    from ..commands import cli\n    from . import compare\n")
    (tmp_path / "parity" / "commands").mkdir()
    (tmp_path / "parity" / "commands" / "__init__.py").write_text("")
    (tmp_path / "parity" / "commands" / "cli.py").write_text("")
    mods = project_modules(str(tmp_path))
    assert imports_of("parity.core.seeded", mods["parity.core.seeded"], mods) == {
        "parity.commands", "parity.commands.cli", "parity.core", "parity.core.compare"}
