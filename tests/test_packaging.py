"""Every package of the library ships: a wheel built from pyproject.toml lists them all."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_pyproject_lists_every_package_of_the_library():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "harness").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
