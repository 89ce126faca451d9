"""What a checkpoint is beyond its label: which weights, which engine, which precision.

A results folder keys its samples by checkpoint label; a label alone cannot tell two models
apart (``final`` of run A and ``final`` of run B). :class:`CheckpointIdentity` records what was
evaluated under a label — the model (path or hub name and revision), the adapter, a
fingerprint of the weights, the engine and the dtype — so that a resume can refuse to serve
one model's samples for another (:meth:`CheckpointIdentity.changes_from`).

Weights are told apart by their fingerprints (:mod:`harness.checkpoints.fingerprints`): a
sampled one always (cheap, and what older folders recorded) and, unless a run opts out with
``--fingerprint sampled``, one of every byte. A hub model that is not on disk is identified by
its name and revision, resolved to a commit where the local hub cache knows it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from harness.checkpoints import Checkpoint, why_not_loaded
from harness.checkpoints.fingerprints import FULL, SAMPLED, fingerprint_kind, weights_fingerprint
from harness.dtypes import dtype_name

log = logging.getLogger("harness")



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
        log.warning("%s: cannot read its config (%s); assuming float32 weights", model, why_not_loaded(model, error))
        return {}


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class CheckpointIdentity:
    """What was evaluated under one label (see the module docstring).

    ``weights`` is the sampled fingerprint of the model folder, with the adapter folder's after
    a ``+`` for an adapter checkpoint (``hub:NAME@COMMIT`` for a part not on disk, ``live:…`` for
    a model in memory); ``full_weights`` the same of every byte (None when the run asked for
    sampled fingerprints only). ``engine``, ``engine_version``, ``dtype`` and ``device`` are the
    engine as resolved for this checkpoint.
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
        if self.weights and before.weights:
            if not _same_weights(self.weights, before.weights):
                changes.append(f"weights {before.weights} -> {self.weights} ({_where(before)} -> {_where(self)})")
        elif (self.model, self.revision, self.adapter) != (before.model, before.revision, before.adapter):
            changes.append(f"model {_where(before)} -> {_where(self)}")
        if self.full_weights and before.full_weights and not _same_weights(self.full_weights, before.full_weights):
            changes.append(f"full weights hash {before.full_weights} -> {self.full_weights}")
        if self.engine != before.engine:
            changes.append(f"engine {before.engine} -> {self.engine}")
        if self.dtype != before.dtype:
            changes.append(f"dtype {before.dtype} -> {self.dtype}")
        return changes


def _same_weights(now: str, before: str) -> bool:
    """Whether two fingerprints (``+``-joined parts) name the same weights. Parts of different
    kinds cannot be compared and do not count as a change; a bare ``hub`` part (written before
    hub parts carried their name and revision) matches any hub part."""
    parts_now, parts_before = now.split("+"), before.split("+")
    if len(parts_now) != len(parts_before):
        return False
    for a, b in zip(parts_now, parts_before):
        if fingerprint_kind(a) == fingerprint_kind(b) and a != b and "hub" not in (a, b):
            return False
    return True


def _where(identity: CheckpointIdentity) -> str:
    text = identity.model + (f"@{identity.revision}" if identity.revision else "")
    return text + (f" + adapter {identity.adapter}" if identity.adapter else "")


def checkpoint_weights(checkpoint: Checkpoint, *, kind: str = SAMPLED) -> str | None:
    """The ``kind`` fingerprint of a checkpoint's weights: the model's, and the adapter's for
    an adapter, ``+``-joined; a part not on disk is ``hub:NAME@REVISION`` (:func:`hub_revision`)."""
    parts = [weights_fingerprint(checkpoint.model, kind=kind) or _hub_part(checkpoint.model, checkpoint.revision)]
    if checkpoint.adapter is not None:
        parts.append(weights_fingerprint(checkpoint.adapter, kind=kind) or _hub_part(checkpoint.adapter, None))
    return "+".join(parts)


def _hub_part(name: str, revision: str | None) -> str:
    commit = hub_revision(name, revision)
    return f"hub:{name}" + (f"@{commit}" if commit else "")


def hub_revision(name: str, revision: str | None) -> str | None:
    """The commit a hub model's ``revision`` (a branch, tag or commit; None: the default branch)
    resolves to in the local hub cache; the revision as given where the cache does not know it
    (nothing is downloaded)."""
    if os.path.exists(name):
        return revision
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, revision=revision, local_files_only=True)).name
    except Exception:  # not cached, offline, or not a hub name: the revision as given
        return revision


def identity_fingerprints(checkpoint: Checkpoint, fingerprint: str) -> dict[str, str | None]:
    """``weights`` and ``full_weights`` of ``checkpoint`` for a run whose ``--fingerprint`` is
    ``fingerprint`` (full: both; sampled: the sampled one only)."""
    return {"weights": checkpoint_weights(checkpoint, kind=SAMPLED),
            "full_weights": checkpoint_weights(checkpoint, kind=FULL) if fingerprint == FULL else None}
