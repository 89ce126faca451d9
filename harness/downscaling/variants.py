"""Down-scaled variants of a model as checkpoints, built once into the variant cache.

Each level of a ``prune:`` spec (:mod:`harness.downscaling.specs`) is the checkpoint
``sparsity-<percent>`` at step ``<percent>``; sparsity 0 is the dense model folder itself.
Variants are written once under ``cache_dir()/variants/<key>/``, where the key hashes the
model's weights fingerprint, the method, the sparsity, the structure, the targets and the
calibration tokens, so a changed input builds a new variant and an unchanged one is reused. A
folder is built beside its final place and renamed at the end: an interrupted build never
looks finished. ``variant.json`` in it records what was pruned and the sparsity each layer
reached, measured after pruning. The sweep loads the variants into its one engine by in-place
reload like any same-shape checkpoints (canary check included).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.checkpoints import TRAINER_STATE, Checkpoint, inspect_checkpoint
from harness.checkpoints.bundled import cache_dir
from harness.checkpoints.fingerprints import weights_fingerprint
from harness.checkpoints.identity import stored_dtype
from harness.downscaling import pruning
from harness.downscaling.specs import PruneSpec, calibration_tokens, check, parse
from harness.dtypes import torch_dtype
from harness.errors import CheckpointError
from harness.io import write_json

log = logging.getLogger("harness")

RECORD = "variant.json"
#: bumped when the way variants are built changes, so old cache entries are not reused
FORMAT = 1
_NOT_COPIED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".index.json")


@dataclass(frozen=True)
class VariantCheckpoint(Checkpoint):
    """A down-scaled variant as the sweep sees it: a checkpoint plus what it is.

    ``variant`` (recorded with the checkpoint in run.json) holds the method, the sparsity
    asked and achieved, the structure, targets and calibration, the parameter counts and the
    path of the full record (``variant.json``: every layer's achieved sparsity).
    """

    variant: dict = field(default_factory=dict, compare=False, hash=False)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:20]


def variant_key(spec: PruneSpec, sparsity: float, model_weights: str, calibration: str | None) -> str:
    """The cache key of one variant: a hash of everything that decides its weights."""
    return _digest({"format": FORMAT, "model": model_weights, "method": spec.method, "sparsity": sparsity,
                    "structure": spec.structure_name, "targets": spec.targets,
                    "calibration": calibration if spec.method in pruning.CALIBRATED else None})


# --------------------------------------------------------------------------- building


def variants_dir() -> Path:
    """Where variants are cached: ``variants/`` in the harness cache."""
    return cache_dir() / "variants"


def _load_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def _copy_model_files(source: Path, target: Path) -> None:
    """Tokenizer, config and generation files of the dense model (not its weights or its
    training state: a variant is not a training checkpoint)."""
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith(_NOT_COPIED_SUFFIXES) and path.name != TRAINER_STATE:
            shutil.copy2(path, target / path.name)


class _Builder:
    """The dense model in memory, loaded on first need, restored before each level."""

    def __init__(self, spec: PruneSpec, include_path: Sequence[str]):
        self.spec = spec
        self.include_path = include_path
        self.model: Any = None
        self._tokenizer: Any = None
        self._dense: dict[str, Any] = {}
        self._norms: dict[str, Any] | None = None
        self.calibration: list[list[int]] | None = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.spec.model_dir)
        return self._tokenizer

    def calibration_digest(self) -> str | None:
        if self.spec.method not in pruning.CALIBRATED:
            return None
        if self.calibration is None:
            self.calibration = calibration_tokens(self.spec, self.tokenizer, self.include_path)
        return _digest(self.calibration)

    def load(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoModelForCausalLM

        dtype = stored_dtype(Checkpoint("dense", None, str(self.spec.model_dir)))
        self.model = AutoModelForCausalLM.from_pretrained(self.spec.model_dir, dtype=torch_dtype(dtype)).eval()
        self.layers = pruning.prunable_layers(self.model, self.spec.targets)
        self._dense = {name: module.weight.detach().clone() for name, module in self.layers}
        self.zeros_before = pruning.zero_counts(self.layers)

    def _batches(self) -> list[Any]:
        import torch

        ids = torch.tensor(self.calibration)
        return [ids[i: i + 4] for i in range(0, len(ids), 4)]

    def prune(self, sparsity: float) -> None:
        """Restore the dense weights, then prune them to ``sparsity``."""
        import torch

        self.load()
        with torch.no_grad():
            for name, module in self.layers:
                module.weight.copy_(self._dense[name])
        if sparsity == 0:
            return
        method, structure = self.spec.method, self.spec.structure
        if method == "magnitude":
            pruning.magnitude_prune(self.layers, sparsity, structure)
        elif method == "wanda":
            if self._norms is None:
                self._norms = pruning.activation_norms(self.model, self.layers, self._batches())
            pruning.wanda_prune(self.layers, self._norms, sparsity, structure)
        else:
            pruning.sparsegpt_prune(self.model, self.layers, self._batches(), sparsity, structure)

    def record(self, sparsity: float, key: str, model_weights: str, seconds: float) -> dict:
        """What the variant is, measured on the weights now in memory."""
        layers = pruning.measure(self.layers, self.zeros_before)
        pruned_params = {f"{name}.weight" for name, _ in self.layers}
        # named_parameters() lists a tied output head once, under the embedding's name.
        parameters = dict(self.model.named_parameters())
        total = sum(p.numel() for p in parameters.values())
        zeros = sum(int((p == 0).sum()) for p in parameters.values())
        numel = sum(layer.numel for layer in layers)
        spec = self.spec
        calibration = None
        if spec.method in pruning.CALIBRATED:
            calibration = {"source": spec.calibration, "sequences": len(self.calibration or []),
                           "seq_len": spec.calibration_length, "seed": spec.seed, "digest": self.calibration_digest()}
        return {
            "format": FORMAT, "key": key, "spec": spec.text, "model": str(spec.model_dir),
            "model_weights": model_weights, "method": spec.method, "structure": spec.structure_name,
            "targets": spec.targets or "every linear layer of the transformer blocks",
            "calibration": calibration, "sparsity": sparsity,
            "achieved": sum(layer.zeros for layer in layers) / numel,
            "achieved_model": zeros / total,
            "layer_min": min(layer.sparsity for layer in layers),
            "layer_max": max(layer.sparsity for layer in layers),
            "params": total, "pruned_params": numel,
            "zeros_added": sum(layer.zeros - layer.zeros_before for layer in layers),
            "layers": {layer.name: layer.sparsity for layer in layers},
            "excluded": sorted(name for name in parameters if name not in pruned_params),
            "seconds": round(seconds, 2),
        }


def _remove_stale_builds(folder: Path) -> None:
    """Remove the half-built copies of ``folder`` left by builds whose process is gone (or by
    this process), so that killed builds do not pile up in the cache."""
    for partial in folder.parent.glob(f"{folder.name}.partial-*"):
        try:
            pid = int(partial.name.rsplit("-", 1)[1])
            if pid != os.getpid():
                os.kill(pid, 0)  # raises when no such process
                continue
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:  # alive, another user's
            continue
        shutil.rmtree(partial, ignore_errors=True)


def _build(builder: _Builder, sparsity: float, key: str, model_weights: str, folder: Path) -> dict:
    """Prune, measure and write one variant into ``folder`` (atomically: staged, then renamed)."""
    started = time.perf_counter()
    builder.prune(sparsity)
    _remove_stale_builds(folder)
    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    staging.mkdir(parents=True)
    if sparsity > 0:  # the dense level is the model folder itself: only its record is kept
        builder.model.save_pretrained(staging)
        _copy_model_files(builder.spec.model_dir, staging)
    record = builder.record(sparsity, key, model_weights, time.perf_counter() - started)
    write_json(staging / RECORD, record)
    try:
        staging.rename(folder)
    except OSError:  # another process finished the same variant first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)
        record = _load_record(folder) or record
    return record


def _summary(record: dict, folder: Path) -> dict:
    """The part of a variant's record that goes into run.json with its checkpoint."""
    keys = ("key", "method", "structure", "targets", "sparsity", "achieved", "achieved_model", "layer_min",
            "layer_max", "params", "pruned_params", "zeros_added")
    summary = {key: record[key] for key in keys}
    summary["calibration"] = (record.get("calibration") or {}).get("source")
    summary["record"] = str(folder / RECORD)
    return summary


def build_variants(spec: PruneSpec, include_path: Sequence[str] = ()) -> list[VariantCheckpoint]:
    """Every variant of ``spec`` as a checkpoint, building the ones not in the cache yet."""
    model_weights = weights_fingerprint(spec.model_dir)
    builder = _Builder(spec, include_path)
    calibration = builder.calibration_digest()
    checkpoints = []
    for sparsity in spec.sparsities:
        key = variant_key(spec, sparsity, model_weights, calibration)
        folder = variants_dir() / key
        record = _load_record(folder)
        if record is None or (sparsity > 0 and inspect_checkpoint(folder)):
            shutil.rmtree(folder, ignore_errors=True)  # a broken or older entry
            log.info("%s: building the %g sparsity variant (%s) into %s", spec.text, sparsity, spec.method, folder)
            record = _build(builder, sparsity, key, model_weights, folder)
        else:
            log.info("%s: reusing the %g sparsity variant %s", spec.text, sparsity, folder)
        percent = round(sparsity * 100)
        checkpoints.append(VariantCheckpoint(
            label=f"sparsity-{percent}", step=percent, model=str(folder if sparsity > 0 else spec.model_dir),
            variant=_summary(record, folder)))
        log.info("%s: sparsity %g asked, %.4f achieved over %d pruned layers (%.4f to %.4f per layer)",
                 spec.text, sparsity, record["achieved"], len(record["layers"]), record["layer_min"],
                 record["layer_max"])
    return checkpoints


def resolve(entries: Sequence[str], include_path: Sequence[str] = ()) -> list[VariantCheckpoint]:
    """The checkpoints of a run's ``prune:`` entries: parsed and checked all first (so a bad
    spec fails before anything is built), then built or taken from the cache."""
    specs = [parse(entry) for entry in entries]
    if len(specs) > 1:
        raise CheckpointError(f"checkpoints: {len(specs)} prune: specs in one run; a run sweeps one "
                              "(its x axis is sparsity): evaluate each into its own --output and "
                              "put them side by side with harness compare")
    for spec in specs:
        check(spec)
    return [checkpoint for spec in specs for checkpoint in build_variants(spec, include_path)]

