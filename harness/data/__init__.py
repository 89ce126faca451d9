"""Offline task data: builders that make examples from real facts shipped in packages
(countries, capitals, currencies, languages, US states), proverbs written in the project,
and synthetic probes (ICL functions, ICL vs instruction following).

Importing this package registers every builder in :data:`BUILDERS`.
"""

from harness.data.registry import BUILDERS, builder, builder_options
from harness.data import facts, proverbs, recall, icl_vs_if, icl_functions, world  # noqa: F401  (registers builders)

__all__ = ["BUILDERS", "builder", "builder_options"]
