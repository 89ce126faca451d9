"""What a checkpoint is beyond its label: which weights, which engine, which precision.

A results folder keys its samples by checkpoint label; a label alone cannot tell two models
apart (``final`` of run A and ``final`` of run B). :class:`CheckpointIdentity` records what was
evaluated under a label — the model (path or hub name and revision), the adapter, a
fingerprint of the weights, the engine and the dtype — so that a resume can refuse to serve
one model's samples for another (:meth:`CheckpointIdentity.changes_from`).

Weights fingerprints (:func:`weights_fingerprint`) are cheap by default: every weight and
config file's name and size, the header of each safetensors file (tensor names, shapes,
dtypes, offsets) and a few sampled blocks of its bytes. A different training step changes the
sampled bytes of essentially every tensor, so this tells checkpoints apart at the cost of a
few reads a file, whatever its size. ``full=True`` hashes every byte (``--verify-weights``).
Hub models that are not on disk are identified by name and revision only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from harness.checkpoints import ADAPTER_CONFIG, Checkpoint
from harness.dtypes import dtype_name

log = logging.getLogger("harness")

SAMPLED_BLOCKS = 16
BLOCK_BYTES = 64 * 1024
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CONFIG_FILES = ("config.json", ADAPTER_CONFIG)
def stored_dtype(checkpoint: Checkpoint) -> str:
    """The dtype the checkpoint's weights are stored in (its config's ``torch_dtype``).

    For an adapter, its base model's. float32 when the config does not say, or names a dtype
    the engines do not run.
    """
    config = model_config(checkpoint)
    stored = config.get("torch_dtype") or config.get("dtype")
    try:
        return dtype_name(stored) if stored else "float32"
    except ValueError:
        log.warning("%s: config dtype %r is not one the engines run; using float32", checkpoint.model, stored)
        return "float32"


#: Config keys that hold a model's context window, by architecture family.
_WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def model_window(checkpoint: Checkpoint) -> int | None:
    """The context window (tokens) the checkpoint's config declares, None if it declares none."""
    config = model_config(checkpoint)
    for key in _WINDOW_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def model_config(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's (for an adapter: its base model's) ``config.json`` as a dict; {} when
    it cannot be read (a broken checkpoint says why when it is loaded)."""
    model, revision = checkpoint.model, checkpoint.revision
    path = Path(model) / "config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return {}  # a broken config is reported when the checkpoint is loaded
        return data if isinstance(data, dict) else {}
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model, revision=revision).to_dict()
    except Exception as error:  # offline and not cached: the engine's load will say so
        log.warning("%s: cannot read its config (%s); assuming float32 weights", model, error)
        return {}


# --------------------------------------------------------------------------- fingerprints


def _fingerprinted_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and (path.suffix in _WEIGHT_SUFFIXES or path.name in _CONFIG_FILES))


def _sampled_bytes(stream: Any, size: int) -> bytes:
    if size <= SAMPLED_BLOCKS * BLOCK_BYTES:
        return stream.read()
    step = (size - BLOCK_BYTES) // (SAMPLED_BLOCKS - 1)
    blocks = []
    for index in range(SAMPLED_BLOCKS):
        stream.seek(index * step)
        blocks.append(stream.read(BLOCK_BYTES))
    return b"".join(blocks)


def _safetensors_header(stream: Any, size: int) -> bytes:
    head = stream.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else 0
    return head + (stream.read(length) if 0 < length <= size - 8 else b"")


def weights_fingerprint(folder: str | os.PathLike[str], *, full: bool = False) -> str | None:
    """A fingerprint of the weight and config files in ``folder`` (module docstring); None
    when the folder holds none. ``sampled:…`` by default, ``full:…`` with ``full=True``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = _fingerprinted_files(folder)
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with path.open("rb") as stream:
            if full:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(chunk)
                continue
            if path.suffix == ".safetensors":
                digest.update(_safetensors_header(stream, size))
            stream.seek(0)
            digest.update(_sampled_bytes(stream, size))
    return f"{'full' if full else 'sampled'}:{digest.hexdigest()[:24]}"


def live_fingerprint(model: Any) -> str:
    """A fingerprint of a model in memory (a model being trained): every parameter's name,
    shape and dtype and a strided sample of its values."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            flat = parameter.detach().reshape(-1)
            stride = max(1, flat.numel() // 256)
            sample = flat[::stride][:256].to("cpu", torch.float32)
            digest.update(f"{name}\0{tuple(parameter.shape)}\0{parameter.dtype}\0".encode())
            digest.update(sample.numpy().tobytes())
    return f"live:{digest.hexdigest()[:24]}"


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class CheckpointIdentity:
    """What was evaluated under one label (see the module docstring).

    ``weights`` is the default (sampled) fingerprint of the model folder, with the adapter
    folder's after a ``+`` for an adapter checkpoint (``live:…`` for a model in memory);
    ``full_weights`` the full content hash where ``--verify-weights`` asked for it. ``engine``,
    ``engine_version``, ``dtype`` and ``device`` are the engine as resolved for this checkpoint.
    """

    model: str
    revision: str | None
    adapter: str | None
    weights: str | None
    engine: str
    engine_version: str | None
    dtype: str
    device: str
    full_weights: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckpointIdentity | None":
        """The identity recorded in a run.json checkpoint entry; None for entries written
        before identities were recorded."""
        if data.get("engine") is None or data.get("dtype") is None:
            return None
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def changes_from(self, before: "CheckpointIdentity") -> list[str]:
        """What differs from ``before`` in a way that changes results, in words (empty: the
        same checkpoint served the same way). A moved folder with the same weights is the
        same checkpoint; another engine version or device is not a change of results."""
        changes = []
        if self.weights and before.weights and self.weights.split(":")[0] == before.weights.split(":")[0]:
            if self.weights != before.weights:
                changes.append(f"weights {before.weights} -> {self.weights} ({before.model} -> {self.model})")
        elif (self.model, self.revision, self.adapter) != (before.model, before.revision, before.adapter):
            changes.append(f"model {_where(before)} -> {_where(self)}")
        if self.full_weights and before.full_weights and self.full_weights != before.full_weights:
            changes.append(f"full weights hash {before.full_weights} -> {self.full_weights}")
        if self.engine != before.engine:
            changes.append(f"engine {before.engine} -> {self.engine}")
        if self.dtype != before.dtype:
            changes.append(f"dtype {before.dtype} -> {self.dtype}")
        return changes


def _where(identity: CheckpointIdentity) -> str:
    text = identity.model + (f"@{identity.revision}" if identity.revision else "")
    return text + (f" + adapter {identity.adapter}" if identity.adapter else "")


def checkpoint_weights(checkpoint: Checkpoint, *, full: bool = False) -> str | None:
    """The fingerprint of a checkpoint's weights on disk: the model folder's, and the
    adapter folder's for an adapter (None where nothing is on disk: a hub model)."""
    parts = [weights_fingerprint(checkpoint.model, full=full)]
    if checkpoint.adapter is not None:
        parts.append(weights_fingerprint(checkpoint.adapter, full=full))
    if all(part is None for part in parts):
        return None
    return "+".join(part or "hub" for part in parts)

