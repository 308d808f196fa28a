"""The architecture, as tests: a layer table over every import (function-local ones included).

Layers, lowest first. A module may import its own package and anything in a lower layer; two
packages on the same layer (``training`` and ``analysis``) never import each other.

    0  errors, fitting, models          pure: fitting/ imports nothing else of flops_fit
    1  config                           settings dataclasses, reading
    2  rundir                           the run directory: layout, io, typed records
    3  planning                         the model contract, FLOP counting, the planner, plan.json
    4  data                             training data (needs the dataset settings and contracts)
    5  training | analysis              running the sweep | fitting it
    6  plots                            figures of a fitted run directory
    7  report | result                  report.html | the Result a user holds
    8  stages                           the only layer that composes the others
    9  api, cli                         the front doors
   10  __init__, __main__

docs/architecture.md lists every module with one line; a test checks it against the tree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import flops_fit
from conftest import REPO

SRC = Path(flops_fit.__file__).resolve().parent

#: the package (first component after flops_fit) or top-level module -> its layer
LAYERS = {
    "errors": 0, "fitting": 0, "models": 0,
    "config": 1,
    "rundir": 2,
    "planning": 3,
    "data": 4,
    "training": 5, "analysis": 5,
    "plots": 6,
    "report": 7, "result": 7,
    "stages": 8,
    "api": 9, "cli": 9,
    "__init__": 10, "__main__": 10,
}
MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 520


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(source: str, top_level_only: bool = False) -> set[str]:
    """Every dotted name a module imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else list(_walk_runtime(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _walk_runtime(node: ast.AST):
    """ast.walk, less the ``if TYPE_CHECKING:`` blocks (annotations only, never executed)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and isinstance(child.test, ast.Name) \
                and child.test.id == "TYPE_CHECKING":
            continue
        yield from _walk_runtime(child)


def part(name: str) -> str:
    """``flops_fit.training.runner`` -> ``training``; ``flops_fit`` -> ``__init__``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(name: str, source: str, modules: set[str]) -> list[str]:
    """Imports of ``source`` (module ``name``) that go up or sideways in :data:`LAYERS`."""
    own = part(name)
    bad = []
    for imp in sorted(imports(source)):
        if not imp.startswith("flops_fit") or imp not in modules:
            continue  # a name inside a module, or another library
        other = part(imp)
        if imp == "flops_fit" or other == own:
            continue
        if LAYERS[other] >= LAYERS[own]:
            bad.append(f"{name} imports {imp} (layer {LAYERS[other]} >= {LAYERS[own]})")
    return bad


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def test_every_part_has_a_layer():
    assert {part(n) for n in MODULES} <= set(LAYERS)


def test_imports_go_down_the_layer_table_function_local_ones_included():
    bad = [v for name, path in MODULES.items()
           for v in layer_violations(name, path.read_text(), set(MODULES))]
    assert not bad, "\n".join(bad)


def test_a_planted_upward_import_fails_the_layer_check():
    # a function-local import of the stages from the planner: the check must see it
    planted = ("def f():\n"
               "    from flops_fit.stages.pipeline import make_plan\n"
               "    return make_plan\n")
    found = layer_violations("flops_fit.planning.planner", planted, set(MODULES))
    assert found == ["flops_fit.planning.planner imports flops_fit.stages.pipeline "
                     "(layer 8 >= 3)"]
    # and sideways: training never reaches into analysis
    sideways = "from flops_fit.analysis.laws import Prediction\n"
    assert layer_violations("flops_fit.training.sweep", sideways, set(MODULES))


def test_no_private_name_crosses_a_module():
    bad = []
    for name, path in MODULES.items():
        for node in _walk_runtime(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flops_fit"):
                bad += [f"{name}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and a.name != "__version__"]
    assert not bad, bad


def test_no_import_cycle_function_local_imports_included():
    graph = {name: {m for m in imports(path.read_text()) if m in MODULES and m != name}
             for name, path in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if nxt == "flops_fit" or node == "flops_fit":
                continue  # the package's lazy __init__
            if nxt.count(".") == 1 and (SRC / nxt.split(".")[1] / "__init__.py").exists() \
                    and nxt.startswith(node + ".") is False and node.startswith(nxt + "."):
                continue  # a module of a package importing its own __init__
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_the_core_imports_neither_hydra_nor_the_cli():
    for name, path in MODULES.items():
        if name in ("flops_fit.cli", "flops_fit.__main__"):
            continue
        for imp in imports(path.read_text()):
            assert not imp.startswith(("hydra", "omegaconf", "flops_fit.cli")), (name, imp)


def test_fitting_depends_on_nothing_else_in_the_package():
    for name, path in MODULES.items():
        if name.startswith("flops_fit.fitting"):
            assert not {m for m in imports(path.read_text()) if m.startswith("flops_fit")
                        and not m.startswith("flops_fit.fitting")}, name


def test_few_top_level_modules_and_no_long_module():
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    long = {name: n for name, p in MODULES.items()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_the_architecture_page_lists_every_module():
    page = (REPO / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"^\s*[-*] `([\w/.]+\.py)`", page, flags=re.M))
    actual = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
              if "conf" not in p.relative_to(SRC).parts}
    assert listed == actual, (sorted(actual - listed), sorted(listed - actual))
