"""Offline task data: builders that make examples from real facts (countries, capitals,
currencies, languages, US states; a snapshot shipped with the harness), proverbs written in
the project, the demo's synthetic world, and synthetic probes (ICL functions, ICL vs
instruction following).

Importing this package registers every builder in :data:`BUILDERS`.
"""

from harness.data.registry import BUILDERS, builder, builder_option_types, builder_options
from harness.data import icl_functions, icl_vs_if, knowledge_conflicts, proverbs, recall, world  # noqa: F401  (registers builders)

__all__ = ["BUILDERS", "builder", "builder_option_types", "builder_options"]
