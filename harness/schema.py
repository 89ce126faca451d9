"""Validating YAML content into dataclasses, with errors that name the file and the key.

Task files and run configs share it: unknown keys, missing fields and wrong types are errors
(what pydantic's ``extra="forbid"`` does, without the dependency).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from harness.errors import did_you_mean

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, file: str, error: type[Exception]) -> Any:
    """Check ``value`` against the annotation ``tp`` (building nested dataclasses)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        failures = []
        for option in options:
            try:
                return _coerce(value, option, where, file, error)
            except error as failure:
                failures.append(failure)
        if len(failures) == 1:
            raise failures[0]
        raise error(f"{file}: {where}: expected {' or '.join(map(_type_name, options))}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _from_mapping(tp, value, where, file, error)
    if origin is list:
        if not isinstance(value, list):
            raise error(f"{file}: {where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]", file, error) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{file}: {where}: expected a mapping, got {value!r}")
        _, item = typing.get_args(tp)
        return {str(k): _coerce(v, item, f"{where}.{k}", file, error) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise error(f"{file}: {where}: expected an integer, got {value!r}")
    if tp is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise error(f"{file}: {where}: expected a number, got {value!r}")
    if tp in (str, bool) and not isinstance(value, tp):
        raise error(f"{file}: {where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _from_mapping(cls: type[T], data: Any, where: str, file: str, error: type[Exception]) -> T:
    if not isinstance(data, Mapping):
        raise error(f"{file}: {where or 'top level'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            raise error(f"{file}: {prefix}{key}: unknown key{did_you_mean(str(key), fields)}; "
                        f"expected one of: {', '.join(fields)}")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _coerce(data[name], hints[name], prefix + name, file, error)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise error(f"{file}: {prefix}{name}: missing required field")
    return cls(**values)


def check_type(value: Any, tp: Any, where: str, file: str, error: type[Exception] = ValueError) -> Any:
    """``value`` checked against the annotation ``tp`` (a dataclass is built from a mapping);
    a mismatch raises ``error`` naming ``file`` and the dotted key ``where``."""
    return _coerce(value, tp, where, file, error)


def from_mapping(cls: type[T], data: Any, file: str, error: type[Exception] = ValueError) -> T:
    """Build dataclass ``cls`` from parsed YAML ``data``; problems raise ``error`` naming
    ``file`` and the dotted key (``scoring.match``)."""
    return _from_mapping(cls, data, "", file, error)


def load_config(cls: type[T], path: str | Path, error: type[Exception], **overrides: Any) -> T:
    """Read a YAML config file into dataclass ``cls``; ``overrides`` (command-line flags) win.

    A missing file, bad YAML, unknown keys and wrong types raise ``error`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: --config: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as failure:
        raise error(f"{path}: not valid YAML: {failure}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: top level: expected a mapping, got {type(data).__name__}")
    # Flags win over the file's keys; the dataclass is built once, from both, so its checks see
    # the settings the run will have (a file's until_step with --follow on the command line).
    try:
        return from_mapping(cls, {**data, **overrides}, str(path), error)
    except error as failure:
        # A value check names its field ("format: unknown ..."): the file too, when the value is the file's
        field = str(failure).split(":", 1)[0]
        if field in data and field not in overrides:
            raise error(f"{path}: {failure}") from None
        raise
