"""The package's shape, as the README's map states it: layers that import only downwards (at
module level and inside functions alike), few modules at the root, and modules small enough
to read."""

from __future__ import annotations

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent

# The README's map, bottom to top: a module may import its own layer and the layers before it.
LAYERS = [
    {"errors", "io", "schema", "console", "seeding", "dtypes", "stats", "conjugates", "examples", "matching"},
    {"data"},
    {"checkpoints"},
    {"backends"},
    {"scoring"},
    {"tasks"},
    {"downscaling"},
    {"results"},
    {"sweep"},
    {"reports"},
    {"training"},
    {"demo"},
    {"cli", "testing"},
]
ROOT_MODULES = 12
LONGEST = 450


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is not on the README's map of the package")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] in ("__init__", "__main__"):
            parts = parts[:-1]
        if len(parts) > 1:
            yield ".".join(parts), path


def _imported(node: ast.AST) -> list[str]:
    """The harness modules an import statement names (``from harness import x`` names harness.x)."""
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.module == "harness":
            return [f"harness.{alias.name}" for alias in node.names]
        return [node.module] if node.module.startswith("harness.") else []
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("harness.")]
    return []


def test_modules_import_only_their_layer_and_the_layers_below():
    upward = []
    for module, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # lazy imports in functions too
            for name in _imported(node):
                if _layer(name) > _layer(module):
                    upward.append(f"{module} imports {name}")
    assert not upward, upward


def test_the_root_holds_few_modules():
    root = [path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]
    assert len(root) <= ROOT_MODULES, sorted(root)


def test_no_module_is_over_450_lines():
    long = {module: n for module, path in _modules()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > LONGEST}
    assert not long, long
