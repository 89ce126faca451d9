"""ift-harness: evaluate instruction-finetuning checkpoints on probes of context reliance.

The public functions are re-exported here lazily, so ``import harness`` stays cheap (no
torch or transformers until one of them is used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "evaluate_model": "harness.callbacks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
