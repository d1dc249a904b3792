"""The layer rule of docs/architecture.md, checked on the source: no module imports a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "calikd"

# low -> high; a module may import its own layer and the layers below it, never one above
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "_startup", "errors", "utils"),
    ("analysis",),
    ("metrics",),
    ("report",),
    ("corruptions",),
    ("data",),
    ("models",),
    ("store",),
    ("calibration",),
    ("augment",),
    ("engine",),
    ("teacher",),
    ("distill",),
    ("results",),
    ("experiments",),
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# (importing module, imported package) pairs that break the rule today; the list only ever shrinks
KNOWN: set[tuple[str, str]] = set()


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "calikd":
                found.extend(f"calikd.{alias.name}" for alias in node.names)
            elif node.module.startswith("calikd."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("calikd."))
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        out.append((".".join(("calikd", *rel.parts)), path))
    return out


def _violations() -> set[tuple[str, str]]:
    bad = set()
    for module, path in _modules():
        own = _package(module)
        for target in _imports(path):
            other = _package(target)
            if other not in RANK:  # e.g. `from calikd import __version__`
                other = "__init__"
            if RANK[other] > RANK[own]:
                bad.add((module, other))
    return bad


def test_every_package_has_a_layer():
    packages = {_package(module) for module, _ in _modules()}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


def test_no_module_imports_a_layer_above_its_own():
    new = _violations() - KNOWN
    assert not new, "imports running up the layers (see docs/architecture.md):\n" + "\n".join(
        f"  {module} imports calikd.{target}" for module, target in sorted(new)
    )


def test_known_exceptions_are_still_needed():
    stale = KNOWN - _violations()
    assert not stale, f"fixed, remove from KNOWN: {sorted(stale)}"


@pytest.mark.parametrize("module", ["calikd.report", "calikd.metrics", "calikd.analysis"])
def test_rendering_and_maths_import_nothing_above(module):
    package = module.split(".")[1]
    assert not {m for m, _ in _violations() if _package(m) == package}
