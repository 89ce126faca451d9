"""What a checkpoint folder holds: whether its files are there to load (a save killed half-way
is not), and the training progress its ``trainer_state.json`` records."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Union

log = logging.getLogger("harness.checkpoints")

#: A path argument: a string or any ``os.PathLike``.
StrPath = Union[str, os.PathLike[str]]

TRAINER_STATE = "trainer_state.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def inspect_checkpoint(path: StrPath) -> str | None:
    """Why the local folder ``path`` cannot be loaded, in one line, or None if it looks fine.

    A model folder needs a ``config.json`` that parses and names a ``model_type``, and a
    weights file (``*.safetensors`` or ``pytorch_model*.bin``; every shard a weights index
    lists). An adapter folder (one with ``adapter_config.json``) needs that file to parse
    and ``adapter_model.safetensors`` or ``adapter_model.bin``. Only files are checked,
    not their contents beyond the JSON, so this stays cheap enough to run on every
    checkpoint before a sweep.
    """
    folder = Path(path)
    if not folder.exists():
        return "folder does not exist"
    if not folder.is_dir():
        return "not a folder"
    if (folder / ADAPTER_CONFIG).exists():
        _, problem = read_json_object(folder / ADAPTER_CONFIG)
        if problem:
            return problem
        if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
            return f"no adapter weights ({', '.join(ADAPTER_WEIGHTS)})"
        return None
    if not (folder / "config.json").is_file():
        return "config.json missing"
    config, problem = read_json_object(folder / "config.json")
    if problem:
        return problem
    if not config.get("model_type"):
        return "config.json has no model_type"
    if not weight_files(folder):
        return "no weights file (*.safetensors, pytorch_model.bin)"
    for index_name in WEIGHT_INDEXES:
        if (folder / index_name).exists():
            problem = missing_shards(folder, index_name)
            if problem:
                return problem
    for weights in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            return f"{weights.name}: {problem}"
    return None


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's layout, None if nothing: its header (8 bytes
    of length, then JSON) must parse and its tensors' byte ranges must lie within the file. A
    copy cut short or a garbled header shows here, before an engine starts on it; the tensor
    bytes themselves are not read."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        start = stream.read(8)
        if len(start) < 8:
            return f"not a safetensors file ({size} bytes)"
        length = int.from_bytes(start, "little")
        if length > size - 8:
            return f"its header claims {length} bytes, more than the file's {size}: not a safetensors file, or cut short"
        try:
            header = json.loads(stream.read(length))
        except ValueError:
            return "its header is not JSON: not a safetensors file, or garbled"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    ends = [entry["data_offsets"][1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and len(entry.get("data_offsets") or ()) == 2]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        return f"cut short: holds {size} of the {needed} bytes its header describes"
    return None


def training_progress(path: StrPath) -> dict[str, int | float]:
    """Training progress recorded in the folder's ``trainer_state.json``, for plotting.

    Returns the keys present among ``global_step``, ``epoch`` and ``num_input_tokens_seen``;
    an empty dict when the folder has no (readable) trainer_state.json. Trainer writes
    ``num_input_tokens_seen`` as 0 when it was not counting tokens, so 0 is left out.
    """
    state = trainer_state(Path(path))
    if state is None:
        return {}
    progress: dict[str, int | float] = {}
    for key in ("global_step", "epoch"):
        if is_number(state.get(key)):
            progress[key] = state[key]
    tokens = state.get("num_input_tokens_seen")
    if is_number(tokens) and tokens > 0:
        progress["num_input_tokens_seen"] = tokens
    return progress


def weight_files(folder: Path) -> list[Path]:
    """A full model's weight files in ``folder`` (not an adapter's)."""
    files = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    # adapter_model.safetensors is an adapter's, not a full model's weights.
    return [f for f in files if f.name not in ADAPTER_WEIGHTS and f.is_file()]


def missing_shards(folder: Path, index_name: str) -> str | None:
    """A sharded save copied or killed half-way lists shards that are not there."""
    index, problem = read_json_object(folder / index_name)
    if problem:
        return problem
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        return f"{index_name} has no weight_map"
    missing = sorted({s for s in weight_map.values() if not (folder / str(s)).is_file()})
    if missing:
        return f"missing weight shards listed in {index_name}: {', '.join(missing)}"
    return None


def read_json_object(path: Path) -> tuple[dict, str | None]:
    """``(data, None)``, or ``({}, one-line reason)`` when the file is not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"{path.name} missing"
    except OSError as error:
        return {}, f"{path.name} cannot be read: {error.strerror or error}"
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        return {}, f"{path.name} is not valid JSON: {error}"
    if not isinstance(data, dict):
        return {}, f"{path.name} is not a JSON object"
    return data, None


def trainer_state(folder: Path) -> dict | None:
    """The folder's trainer_state.json, or None when absent or unreadable (logged): a bad
    progress file must not stop a sweep, the folder name or an unknown step will do."""
    if not (folder / TRAINER_STATE).exists():
        return None
    state, problem = read_json_object(folder / TRAINER_STATE)
    if problem:
        log.warning("ignoring %s: %s", folder / TRAINER_STATE, problem)
        return None
    return state


def state_step(folder: Path) -> int | None:
    """The optimizer step the folder's trainer_state.json records (None: none, or not a step)."""
    state = trainer_state(folder)
    step = state.get("global_step") if state else None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def is_number(value: object) -> bool:
    """A JSON number (booleans are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
