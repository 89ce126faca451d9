"""The dtype a CPU engine runs in when the user names none: bfloat16 only where the CPU has
AMX or AVX512-BF16 units, else float32, with the reason on the console once."""

from __future__ import annotations

import logging

import pytest

from harness.backends.hf import HFBackend
from harness.checkpoints import Checkpoint
from harness.dtypes import CPU_FLAGS_ENV, cpu_dtype, cpu_flags

EPYC_NO_AMX = "fpu vme sse sse2 avx avx2 fma f16c sha_ni"  # this project's 2-core AMD EPYC (lscpu)
SAPPHIRE_RAPIDS = "fpu sse avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return path


def test_flags_come_from_cpuinfo_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(CPU_FLAGS_ENV, raising=False)
    assert cpu_flags(cpuinfo(tmp_path, EPYC_NO_AMX)) == frozenset(EPYC_NO_AMX.split())
    assert cpu_flags(tmp_path / "missing") is None  # not Linux
    monkeypatch.setenv(CPU_FLAGS_ENV, "amx_bf16 avx2")
    assert cpu_flags(cpuinfo(tmp_path, EPYC_NO_AMX)) == {"amx_bf16", "avx2"}


@pytest.mark.parametrize("flags, dtype", [
    (EPYC_NO_AMX, "float32"), (SAPPHIRE_RAPIDS, "bfloat16"), ("avx512f avx512_bf16", "bfloat16"),
    ("avx512f avx512bw", "float32"), ("", "float32"),
])
def test_bfloat16_only_with_fast_units(flags, dtype):
    assert cpu_dtype(frozenset(flags.split())).dtype == dtype


def test_the_reason_names_what_is_missing():
    assert cpu_dtype(frozenset(EPYC_NO_AMX.split())).reason == (
        "dtype float32: this CPU has no AMX/AVX512-BF16; bfloat16 takes a slow path (--dtype overrides)")
    assert "amx_bf16/avx512_bf16" in cpu_dtype(frozenset(SAPPHIRE_RAPIDS.split())).reason


def test_a_cpu_engine_follows_the_cpu_and_says_why_once(tiny_llama_dir, monkeypatch, caplog):
    checkpoint = Checkpoint(label="m", step=None, model=str(tiny_llama_dir))
    monkeypatch.setenv(CPU_FLAGS_ENV, SAPPHIRE_RAPIDS)
    backend = HFBackend()
    with caplog.at_level(logging.INFO, logger="harness"):
        assert backend.dtype_for(checkpoint) == "bfloat16"  # a float32 checkpoint on an AMX CPU
        assert backend.identity(checkpoint).dtype == "bfloat16"
    assert sum("dtype bfloat16: this CPU has" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setenv(CPU_FLAGS_ENV, EPYC_NO_AMX)
    assert HFBackend().dtype_for(checkpoint) == "float32"
    assert HFBackend(dtype="bf16").dtype_for(checkpoint) == "bfloat16"  # asked for: the user's


def test_off_the_cpu_a_checkpoint_keeps_its_stored_dtype(tiny_llama_dir, monkeypatch):
    monkeypatch.setenv(CPU_FLAGS_ENV, SAPPHIRE_RAPIDS)
    checkpoint = Checkpoint(label="m", step=None, model=str(tiny_llama_dir))
    assert HFBackend(device="cuda").dtype_for(checkpoint) == "float32"
