"""The dtype a CPU engine runs in when the user names none: the stored one, except a
half-precision checkpoint on a CPU without AMX or AVX512-BF16 units runs in float32; the reason
is on the console once."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("flags, stored, dtype", [
    (EPYC_NO_AMX, "bfloat16", "float32"), (SAPPHIRE_RAPIDS, "bfloat16", "bfloat16"),
    ("avx512f avx512_bf16", "bfloat16", "bfloat16"), ("avx512f avx512bw", "bfloat16", "float32"),
    ("", "float16", "float32"), (SAPPHIRE_RAPIDS, "float16", "bfloat16"),
    (SAPPHIRE_RAPIDS, "float32", "float32"), (EPYC_NO_AMX, "float32", "float32"),
])
def test_half_precision_only_with_fast_units(flags, stored, dtype):
    assert cpu_dtype(stored, frozenset(flags.split())).dtype == dtype


def test_the_reason_names_what_is_missing():
    assert cpu_dtype("bfloat16", frozenset(EPYC_NO_AMX.split())).reason == (
        "dtype float32 for a bfloat16 checkpoint: this CPU has no AMX/AVX512-BF16; bfloat16 takes a slow path "
        "(--dtype overrides)")
    assert "amx_bf16/avx512_bf16" in cpu_dtype("bfloat16", frozenset(SAPPHIRE_RAPIDS.split())).reason
    assert cpu_dtype("float32", frozenset()).reason == "dtype float32: as the checkpoint is stored"
    assert cpu_dtype("float32", frozenset(SAPPHIRE_RAPIDS.split())).reason == (
        "dtype float32: as the checkpoint is stored; --dtype bfloat16 runs faster on this CPU's amx_bf16/avx512_bf16")


@pytest.fixture
def bf16_llama_dir(tiny_llama_dir, tmp_path):
    """The tiny model's config saying bfloat16 (weights untouched: only the config is read)."""
    folder = tmp_path / "bf16"
    folder.mkdir()
    for path in tiny_llama_dir.iterdir():
        (folder / path.name).symlink_to(path)
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    return folder


def test_a_cpu_engine_follows_the_cpu_and_says_why_once(tiny_llama_dir, bf16_llama_dir, monkeypatch, caplog):
    checkpoint = Checkpoint(label="m", step=None, model=str(bf16_llama_dir))
    monkeypatch.setenv(CPU_FLAGS_ENV, SAPPHIRE_RAPIDS)
    backend = HFBackend()
    with caplog.at_level(logging.INFO, logger="harness"):
        assert backend.dtype_for(checkpoint) == "bfloat16"
        assert backend.identity(checkpoint).dtype == "bfloat16"
    assert sum("dtype bfloat16 for a bfloat16 checkpoint: this CPU has" in r.getMessage()
               for r in caplog.records) == 1
    monkeypatch.setenv(CPU_FLAGS_ENV, EPYC_NO_AMX)
    assert HFBackend().dtype_for(checkpoint) == "float32"
    assert HFBackend(dtype="bf16").dtype_for(checkpoint) == "bfloat16"  # asked for: the user's
    float32_checkpoint = Checkpoint(label="f", step=None, model=str(tiny_llama_dir))
    monkeypatch.setenv(CPU_FLAGS_ENV, SAPPHIRE_RAPIDS)
    assert HFBackend().dtype_for(float32_checkpoint) == "float32"  # never lowered behind the user's back


def test_off_the_cpu_a_checkpoint_keeps_its_stored_dtype(bf16_llama_dir, monkeypatch):
    monkeypatch.setenv(CPU_FLAGS_ENV, EPYC_NO_AMX)
    checkpoint = Checkpoint(label="m", step=None, model=str(bf16_llama_dir))
    assert HFBackend(device="cuda").dtype_for(checkpoint) == "bfloat16"
