"""The package's shape, as the README's map states it: layers that import only downwards,
and modules small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent

# The README's map, top to bottom: a module may import its own layer and the layers above.
LAYERS = [
    {"errors", "io", "schema", "bundled", "console"},
    {"examples", "matching", "stats", "conjugates"},
    {"data"},
    {"checkpoints", "identity", "follow"},
    {"backends"},
    {"scoring"},
    {"tasks"},
    {"prompts"},
    {"downscale", "pruning"},
    {"results"},
    {"plan", "run_config", "trackers", "runner", "windows", "workers"},
    {"analysis", "items", "scaling", "plots", "html", "exports", "report_details", "report"},
    {"training"},
    {"demo"},
    {"cli", "testing"},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is not on the README's map of the package")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:
            yield ".".join(parts), path


def test_modules_import_only_their_layer_and_the_layers_above():
    upward = []
    for module, path in _modules():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level: what loads with it
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness."):
                if _layer(node.module) > _layer(module):
                    upward.append(f"{module} imports {node.module}")
    assert not upward, upward


def test_no_module_is_over_600_lines():
    long = {module: n for module, path in _modules()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long
