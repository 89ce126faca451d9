"""Interpolated checkpoints: "how much finetuning" as a dial.

An ``interp:`` entry in ``--checkpoints`` (or a run config's ``checkpoints``) makes one model a
level between a base model and its finetuned version, with the weights
``θ_base + λ (θ_tuned − θ_base)`` — the weight-space interpolation of WiSE-FT (Wortsman et al.
2022) and of partial adaptation — and hands them to the sweep like training checkpoints::

    interp:BASE..TUNED@LEVELS
    interp:runs/base..runs/standard/final@0,0.25,0.5,0.75,1

``BASE`` and ``TUNED`` are local model folders; ``TUNED`` may be a PEFT adapter folder, merged
into its base first (the adapter's own base model where that folder exists, else ``BASE``).
``LEVELS`` are the λ values, comma-separated, in [0, 1] unless ``--extrapolate`` is given.

Each level is the checkpoint ``lambda-<λ>`` at step ``round(100 λ)`` (λ is the run's x axis, in
percent). λ = 0 is the base folder itself and λ = 1 the tuned folder itself (an adapter's merged
model is built), so their results are the base's and the tuned model's exactly; the other
levels are computed with ``torch.lerp`` in float32 and stored in the models' own dtype, written
once into the variant cache (``cache_dir()/variants/<key>``, the key hashing both models' weights
fingerprints and λ), staged and renamed like pruned variants so an interrupted build never looks
finished. The sweep loads them into its one engine by in-place reload, each checked by the
canary like any checkpoint.

Every problem with a spec (a missing model folder, λ outside [0, 1] without ``extrapolate``,
two models of other architectures or other weight shapes) is one :class:`CheckpointError`
naming the spec and what is wrong, raised before any engine starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkpoints import ADAPTER_CONFIG, Checkpoint, inspect_checkpoint
from harness.checkpoints.bundled import cache_dir
from harness.checkpoints.identity import stored_dtype, weights_fingerprint
from harness.errors import CheckpointError
from harness.io import write_json

log = logging.getLogger("harness")

PREFIX = "interp:"
RECORD = "interp.json"
#: bumped when the way interpolated models are built changes, so old cache entries are not reused
FORMAT = 1
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".index.json")
_NOT_COPIED = (ADAPTER_CONFIG, "adapter_model.safetensors", "adapter_model.bin", "trainer_state.json")


@dataclass(frozen=True)
class InterpSpec:
    """A parsed ``interp:`` entry (module docstring)."""

    text: str
    base: Path
    tuned: Path
    levels: tuple[float, ...]

    @property
    def tuned_is_adapter(self) -> bool:
        return (self.tuned / ADAPTER_CONFIG).is_file()


def is_interp_spec(entry: object) -> bool:
    """Whether a ``checkpoints`` entry is an ``interp:`` spec."""
    return isinstance(entry, str) and entry.startswith(PREFIX)


def parse(text: str, *, extrapolate: bool = False) -> InterpSpec:
    """Parse and check an ``interp:`` spec (module docstring); every problem is a
    :class:`CheckpointError` naming the spec."""
    body = text[len(PREFIX):]
    models, at, levels_text = body.rpartition("@")
    base, dots, tuned = models.partition("..")
    if not at or not dots or not base or not tuned:
        raise CheckpointError(f"{text}: expected interp:BASE..TUNED@LEVELS, e.g. interp:runs/base..runs/sft@0,0.5,1")
    try:
        levels = tuple(float(part) for part in levels_text.split(",") if part.strip())
    except ValueError:
        raise CheckpointError(f"{text}: the levels {levels_text!r} are not comma-separated numbers") from None
    if not levels:
        raise CheckpointError(f"{text}: no λ levels after '@'")
    outside = [level for level in levels if not 0 <= level <= 1]
    if outside and not extrapolate:
        raise CheckpointError(f"{text}: λ {', '.join(f'{v:g}' for v in outside)} lies outside [0, 1] (an "
                              "extrapolation beyond the models); pass --extrapolate to allow it")
    if len(set(levels)) != len(levels):
        raise CheckpointError(f"{text}: a λ level is given twice")
    spec = InterpSpec(text, Path(base).expanduser(), Path(tuned).expanduser(), tuple(sorted(levels)))
    for role, folder in (("base", spec.base), ("tuned", spec.tuned)):
        if not folder.is_dir():
            raise CheckpointError(f"{text}: the {role} model folder {folder} does not exist")
    problem = inspect_checkpoint(spec.base)
    if problem:
        raise CheckpointError(f"{text}: the base model {spec.base}: {problem}")
    problem = inspect_checkpoint(spec.tuned)
    if problem:
        raise CheckpointError(f"{text}: the tuned model {spec.tuned}: {problem}")
    _check_same_architecture(spec)
    return spec


def _config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _check_same_architecture(spec: InterpSpec) -> None:
    """Refuse two models that are not one architecture (the adapter's base must be the base's)."""
    tuned_config = _config(_adapter_base(spec) if spec.tuned_is_adapter else spec.tuned)
    base_config = _config(spec.base)
    for key in ("model_type", "architectures", "hidden_size", "num_hidden_layers", "vocab_size", "n_embd", "n_layer"):
        if base_config.get(key) != tuned_config.get(key):
            raise CheckpointError(
                f"{spec.text}: the base and tuned models are not one architecture ({key}: "
                f"{base_config.get(key)!r} in {spec.base}, {tuned_config.get(key)!r} in {spec.tuned}); interpolation "
                "needs the tuned model to be a finetuned copy of the base")


def _adapter_base(spec: InterpSpec) -> Path:
    """The model an adapter is merged into: its own base where that folder exists, else BASE."""
    try:
        named = json.loads((spec.tuned / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        named = None
    return Path(named) if named and Path(named).is_dir() else spec.base


# --------------------------------------------------------------------------- building


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _load(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    from harness.dtypes import torch_dtype

    dtype = torch_dtype(stored_dtype(Checkpoint("interp", None, str(folder))))
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()


def _tuned_model(spec: InterpSpec) -> Any:
    """The tuned model in memory (an adapter merged into its base first)."""
    if not spec.tuned_is_adapter:
        return _load(spec.tuned)
    from peft import PeftModel

    return PeftModel.from_pretrained(_load(_adapter_base(spec)), str(spec.tuned)).merge_and_unload().eval()


def interpolate(ours: dict[str, Any], theirs: dict[str, Any], level: float) -> dict[str, Any]:
    """``base + level (tuned - base)`` for every tensor of the two state dicts, in float32,
    cast back to each tensor's dtype. ``torch.lerp`` returns ``base`` at 0 and ``tuned`` at 1
    bit for bit; tensors or shapes that differ are a :class:`CheckpointError`."""
    import torch

    if ours.keys() != theirs.keys():
        different = sorted(ours.keys() ^ theirs.keys())
        raise CheckpointError(f"the two models do not hold the same tensors ({', '.join(different[:3])}...)")
    mixed = {}
    for name, tensor in ours.items():
        other = theirs[name]
        if tensor.shape != other.shape:
            raise CheckpointError(f"tensor {name} has shape {tuple(tensor.shape)} in the base and "
                                  f"{tuple(other.shape)} in the tuned model")
        if not tensor.is_floating_point():
            mixed[name] = tensor
            continue
        mixed[name] = torch.lerp(tensor.float(), other.float(), level).to(tensor.dtype)
    return mixed


class _Models:
    """The base model (whose weights are swapped for each level before saving) and both
    models' original state dicts, loaded once, on the first level to build."""

    def __init__(self, spec: InterpSpec):
        self.model = _load(spec.base)
        self.base = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}
        self.tuned = {name: tensor.detach() for name, tensor in _tuned_model(spec).state_dict().items()}


def _build(spec: InterpSpec, level: float, models: _Models, key: str, folder: Path) -> None:
    """Write one interpolated model into ``folder``, staged beside it and renamed at the end."""
    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        models.model.load_state_dict(interpolate(models.base, models.tuned, level))
        models.model.save_pretrained(staging)
        for path in spec.tuned.iterdir():  # the tuned model's tokenizer and generation settings
            if path.is_file() and not path.name.endswith(_WEIGHT_SUFFIXES) and path.name not in _NOT_COPIED \
                    and path.name != "config.json":
                shutil.copy2(path, staging / path.name)
        write_json(staging / RECORD, {"format": FORMAT, "key": key, "spec": spec.text, "base": str(spec.base),
                                      "tuned": str(spec.tuned), "lambda": level})
        staging.rename(folder)
    except OSError:
        if not (folder / RECORD).is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


LEVEL_LABEL = "lambda-"


def label(level: float) -> str:
    """The checkpoint label of level λ (``lambda-0.25``)."""
    return f"{LEVEL_LABEL}{level:g}"


def level_of(checkpoint_label: str) -> float | None:
    """The level λ of an interpolated checkpoint's label (:func:`label`); None for any other."""
    if not checkpoint_label.startswith(LEVEL_LABEL):
        return None
    try:
        return float(checkpoint_label[len(LEVEL_LABEL):])
    except ValueError:
        return None


def build_levels(spec: InterpSpec) -> list[Checkpoint]:
    """Every level of ``spec`` as a checkpoint, building those not in the cache yet."""
    fingerprints = [weights_fingerprint(spec.base), weights_fingerprint(spec.tuned)]
    if spec.tuned_is_adapter:
        fingerprints.append(weights_fingerprint(_adapter_base(spec)))
    models: _Models | None = None
    checkpoints = []
    for level in spec.levels:
        if level == 0 or (level == 1 and not spec.tuned_is_adapter):
            folder = spec.base if level == 0 else spec.tuned  # exactly the models themselves
        else:
            key = _key(FORMAT, fingerprints, level)
            folder = cache_dir() / "variants" / f"interp-{key}"
            if not (folder / RECORD).is_file() or inspect_checkpoint(folder):
                shutil.rmtree(folder, ignore_errors=True)  # a broken or older entry
                if models is None:  # loaded once, on the first level to build
                    models = _Models(spec)
                log.info("%s: building λ=%g into %s", spec.text, level, folder)
                try:
                    _build(spec, level, models, key, folder)
                except CheckpointError as error:  # tensors that do not pair up
                    raise CheckpointError(f"{spec.text}: {error}") from None
            else:
                log.info("%s: reusing λ=%g from %s", spec.text, level, folder)
        checkpoints.append(Checkpoint(label=label(level), step=round(level * 100), model=str(folder)))
    return checkpoints


def resolve(entries: list[str], *, extrapolate: bool = False) -> list[Checkpoint]:
    """The checkpoints of a run's ``interp:`` entry (one a run: its x axis is λ)."""
    if len(entries) > 1:
        raise CheckpointError(f"checkpoints: {len(entries)} interp: specs in one run; a run sweeps one (its x axis "
                              "is λ): evaluate each into its own --output")
    return build_levels(parse(entries[0], extrapolate=extrapolate))
