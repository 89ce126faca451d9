"""Engine options given on the command line as one string (``--engine-args k=v,k=v``).

lm-evaluation-harness users pass ``--model_args pretrained=...,dtype=bfloat16``; ours is the
same form. Each value is read as a YAML scalar or flow collection (``yaml.safe_load``), so
``true``, ``0.8``, ``[1, 2]`` and ``{a: 1}`` mean what they mean in a run config, and a comma
inside brackets or quotes does not split. Names are checked against
:data:`harness.backends.ENGINE_OPTIONS` (with a "did you mean"), values against the option's
type; a name that table lacks but ``vllm.EngineArgs`` has (``block_size``, ``max_num_seqs``)
goes to vLLM through ``engine_kwargs``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

import yaml

from harness.backends import ENGINE_OPTIONS, vllm_import_error
from harness.errors import RunError


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
            close = difflib.get_close_matches(name, [*ENGINE_OPTIONS, *vllm_fields], 3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise RunError(f"{where}: {name}: not an engine option{hint}; the harness's options: "
                           f"{', '.join(sorted(ENGINE_OPTIONS))}"
                           + ("; with vLLM installed, any vllm.EngineArgs field also goes" if not vllm_fields else ""))
        if not _fits(value, option.type):
            raise RunError(f"{where}: {name}: expected {option.type.__name__} ({option.help}), got {value!r}")
        checked[name] = value
    if extra:
        checked["engine_kwargs"] = {**checked.get("engine_kwargs", {}), **extra}
    return checked
