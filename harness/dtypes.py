"""Dtype names: one spelling of each precision the engines run, and its torch dtype.

The harness records and compares dtypes by name (``float32``, ``bfloat16``, ``float16``);
users may write any common alias (``fp32``, ``bf16``, ``half``, ``torch.float16``).
"""

from __future__ import annotations

from typing import Any

_NAMES = {"float32": "float32", "fp32": "float32", "float": "float32", "bfloat16": "bfloat16",
          "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16"}


def dtype_name(dtype: Any) -> str:
    """The canonical name (``float32``, ``bfloat16``, ``float16``) of a dtype or its name.

    Raises ``ValueError`` for anything else (``auto`` included: resolve it first, e.g. with
    :func:`harness.checkpoints.identity.stored_dtype`).
    """
    name = _NAMES.get(str(dtype).lower().replace("torch.", ""))
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r} (expected float32, bfloat16 or float16)")
    return name


def torch_dtype(dtype: Any) -> Any:
    """A ``torch.dtype`` from a name (``"float32"``, ``"bf16"``...) or a dtype; ``"auto"`` (and
    None) stays ``"auto"``: transformers then loads the checkpoint's own dtype."""
    import torch

    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, dtype_name(dtype))
