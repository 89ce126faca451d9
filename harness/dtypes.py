"""Dtype names: one spelling of each precision the engines run, and its torch dtype.

The harness records and compares dtypes by name (``float32``, ``bfloat16``, ``float16``);
users may write any common alias (``fp32``, ``bf16``, ``half``, ``torch.float16``).

On a CPU, when the user names no dtype, :func:`cpu_dtype` keeps the stored one, except that a
half-precision checkpoint runs in float32 where the CPU has no AMX or AVX512-BF16 units: without them
bfloat16 matrix products take a slow fallback path (on vLLM's CPU build, oneDNN reports
"Failed to create oneDNN linear" in the engine log and a first look took more than ten times
as long as in float32).
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import did_you_mean

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


def check_dtype_setting(value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is ``auto`` or a dtype name (an alias included),
    the message naming what is accepted (the dtype of a run config or a finetuning config)."""
    if value == "auto":
        return
    try:
        dtype_name(value)
    except ValueError:
        raise ValueError(f"unknown dtype {value!r}{did_you_mean(str(value), ['auto', *_NAMES])}; expected auto, "
                         "float32, bfloat16 or float16 (or an alias: fp32, bf16, fp16, half)") from None


def torch_dtype(dtype: Any) -> Any:
    """A ``torch.dtype`` from a name (``"float32"``, ``"bf16"``...) or a dtype; ``"auto"`` (and
    None) stays ``"auto"``: transformers then loads the checkpoint's own dtype."""
    import torch

    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, dtype_name(dtype))


#: CPU flags (as /proc/cpuinfo spells them) of units that compute bfloat16 fast.
FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: Replaces the CPU's flags when set (space-separated; empty: none): the test suite sets it so
#: that its numbers do not depend on the machine it runs on.
CPU_FLAGS_ENV = "IFT_HARNESS_CPU_FLAGS"


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a CPU engine runs in when none is asked for, and why (a console line)."""

    dtype: str
    reason: str


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags (from ``$IFT_HARNESS_CPU_FLAGS`` if set, else the first
    ``flags`` line of ``cpuinfo``); None where they cannot be read (not Linux)."""
    if CPU_FLAGS_ENV in os.environ:
        return frozenset(os.environ[CPU_FLAGS_ENV].split())
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        return None
    return None


def cpu_description(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU as measurements name it: model, cores this process may use, and whether it has
    fast bfloat16 units (``"AMD EPYC, 2 cores, no AMX/AVX512-BF16"``)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open(cpuinfo, encoding="utf-8", errors="replace") as f:
        model = next((line.partition(":")[2].strip() for line in f if line.startswith("model name")), model)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = cpu_flags(cpuinfo)
    fast = sorted(set(FAST_BF16_FLAGS) & (flags or frozenset()))
    units = "/".join(fast) if fast else "no AMX/AVX512-BF16" if flags is not None else "flags unknown"
    return f"{model}, {cores} cores, {units}"


def cpu_dtype(stored: str, flags: frozenset[str] | None = None) -> DtypeChoice:
    """The dtype for a CPU engine when the user gives none, for a checkpoint stored in ``stored``:
    float32 stays float32 (numbers do not depend on the machine); a half-precision checkpoint runs
    in bfloat16 where the CPU has one of :data:`FAST_BF16_FLAGS`, else in float32, because
    bfloat16 without those units takes a slow path (``flags``: default :func:`cpu_flags`)."""
    flags = cpu_flags() if flags is None else flags
    fast = sorted(set(FAST_BF16_FLAGS) & (flags or frozenset()))
    if stored not in ("bfloat16", "float16"):
        faster = f"; --dtype bfloat16 runs faster on this CPU's {'/'.join(fast)}" if fast else ""
        return DtypeChoice(stored, f"dtype {stored}: as the checkpoint is stored{faster}")
    if fast:
        return DtypeChoice("bfloat16", f"dtype bfloat16 for a {stored} checkpoint: this CPU has {'/'.join(fast)} "
                                       "(--dtype float32 for full precision)")
    if flags is None:
        return DtypeChoice("float32", f"dtype float32 for a {stored} checkpoint: this CPU's flags cannot be read, "
                                      "so no AMX/AVX512-BF16 is assumed; bfloat16 would take a slow path "
                                      "(--dtype overrides)")
    return DtypeChoice("float32", f"dtype float32 for a {stored} checkpoint: this CPU has no AMX/AVX512-BF16; "
                                  "bfloat16 takes a slow path (--dtype overrides)")
