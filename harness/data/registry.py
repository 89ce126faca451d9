"""The table of data builders: functions that make a task's examples offline.

A builder is a function ``(**options) -> list[Example]`` registered under a name with
:func:`builder`; a task YAML names it in ``source.builder`` and passes ``source.options``
as keyword arguments. Builders must be deterministic for given options (seeded) so a
task's content hash is stable.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable

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
    return list(builder_option_types(name))


def builder_option_types(name: str) -> dict[str, Any]:
    """Each keyword option of a builder and the type its annotation gives."""
    function = BUILDERS[name]
    hints = typing.get_type_hints(function)
    parameters = inspect.signature(function).parameters.values()
    return {p.name: hints.get(p.name, Any) for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
