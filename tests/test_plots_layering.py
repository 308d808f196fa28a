"""The plots package depends only on the typed records and laws, never on the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import flops_fit.plots

ALLOWED = {"records", "layout", "sections", "laws", "analysis", "rundir", "errors", "fitting"}
PLOTS_DIR = Path(flops_fit.plots.__file__).parent


def _package_imports(path: Path) -> set[str]:
    """The ``flops_fit.<module>`` names a file imports (at any depth of the tree)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                     if node.module == "flops_fit"]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "flops_fit" and len(parts) > 1:
                out.add(".".join(parts[1:3]) if parts[1] == "plots" else parts[1])
    return out


def test_plots_import_only_records_and_laws():
    files = sorted(PLOTS_DIR.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = {m for m in _package_imports(path)
               if not (m == "plots" or m.startswith("plots.") or m in ALLOWED)}
        assert not bad, f"{path.name} imports {sorted(bad)}"
