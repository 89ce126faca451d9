"""ift-harness: evaluate instruction-finetuning checkpoints on probes of context reliance.

The public functions are re-exported here lazily, so ``import harness`` stays cheap (no
torch or transformers until one of them is used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "evaluate": "harness.sweep.evaluate",
    "RunConfig": "harness.sweep.config",
    "Sweep": "harness.sweep.sweep",
    "TaskRegistry": "harness.tasks",
    "HarnessError": "harness.errors",
    "load_results": "harness.reports.runs",
    "load_samples": "harness.reports.items",
    "transitions": "harness.reports.items",
    "detect_inversion": "harness.reports.recipes",
    "write_report": "harness.reports.report",
    "compare": "harness.reports.compare",
    "FinetuneConfig": "harness.training.config",
    "run_finetune": "harness.training.run",
    "evaluate_model": "harness.training.callbacks",
    "ContextRelianceCallback": "harness.training.callbacks",
}

__all__ = sorted(_EXPORTS)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
