"""ift-harness: evaluate instruction-finetuning checkpoints on probes of context reliance.

The public functions are re-exported here lazily, so ``import harness`` stays cheap (no
torch or transformers until one of them is used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "evaluate": "harness.runner",
    "RunConfig": "harness.runner",
    "Sweep": "harness.runner",
    "TaskRegistry": "harness.tasks",
    "load_results": "harness.results",
    "write_report": "harness.report",
    "compare": "harness.report",
    "detect_inversion": "harness.report",
    "evaluate_model": "harness.callbacks",
    "ContextRelianceCallback": "harness.callbacks",
}
# Names that differ from the attribute in their module.
_ALIASES = {"load_results": "load"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), _ALIASES.get(name, name))
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
