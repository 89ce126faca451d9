"""Prompt templates: plain ``{field}`` placeholders and nothing else.

No attribute access (``{a.b}``), no indexing (``{a[0]}``), no conversions or format specs:
a template is filled, never evaluated, so a task file cannot run code.
"""

from __future__ import annotations

import string
from typing import Mapping


def placeholders(template: str) -> list[str]:
    """The ``{field}`` names of a template; rejects anything beyond plain placeholders."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain {{field}}")
        names.append(name)
    return names


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill a template's plain ``{field}`` placeholders (validated by :func:`placeholders`)."""
    return template.format_map(values)
