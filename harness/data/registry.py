"""The table of data builders: functions that make a task's examples offline.

A builder is a function ``(**options) -> list[Example]`` registered under a name with
:func:`builder`; a task YAML names it in ``source.builder`` and passes ``source.options``
as keyword arguments. Builders must be deterministic for given options (seeded) so a
task's content hash is stable.
"""

from __future__ import annotations

import inspect
from typing import Callable

from harness.examples import Example

Builder = Callable[..., list[Example]]

BUILDERS: dict[str, Builder] = {}


def builder(name: str) -> Callable[[Builder], Builder]:
    """Register a builder function under ``name``."""

    def register(function: Builder) -> Builder:
        if name in BUILDERS:
            raise ValueError(f"builder {name!r} is registered twice")
        BUILDERS[name] = function
        return function

    return register


def builder_options(name: str) -> list[str]:
    """The keyword options a builder accepts (for validating task YAML)."""
    parameters = inspect.signature(BUILDERS[name]).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
