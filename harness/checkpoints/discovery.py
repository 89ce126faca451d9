"""Checkpoint discovery: turning ``--checkpoints`` into an ordered list of checkpoints.

A spec is a comma-separated string or a sequence of entries (sequence items are taken
literally, so a path holding a comma can still be named). Each entry is one of:

- a run folder in HF Trainer layout (``out/`` holding ``checkpoint-10/``, ``checkpoint-20/``,
  ...); when the folder itself also holds a final model or adapter (``config.json`` +
  weights, or ``adapter_config.json`` + adapter weights), that is one more checkpoint
  labelled ``final``;
- one model folder (``config.json`` + ``*.safetensors`` / ``pytorch_model*.bin``) or one
  PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors`` / ``.bin``);
- a glob (``runs/*/checkpoint-*``); matched folders that are not checkpoints (a ``logs/``
  caught by ``runs/*``) are skipped;
- a hub model, optionally at a revision (Pythia style: ``EleutherAI/pythia-160m@step1000``).

Local or hub: an entry that exists on disk is local, whatever characters it holds. Otherwise
one that starts with ``/``, ``./``, ``../`` or ``~``, or whose first component is an existing
folder (``out/checkpoint-99`` where ``out/`` exists), is a missing local path (an error);
one shaped ``org/name`` is a hub model. Bare hub names (``gpt2``) are not accepted: they are
indistinguishable from a mistyped local folder, and the hub redirects them to ``org/name``
ids anyway. A local folder cannot take ``@revision``.

Steps come from ``trainer_state.json`` (``global_step``) when the folder has one, else from
the folder name (``checkpoint-500``, ``step500``, ``global_step500``, ``step500-tokens2B``,
``500``, a trailing ``-500``). trainer_state.json is authoritative: HF Trainer writes the
true optimizer step there, while folder names are renamed and copied by hand; a disagreement
is logged as a warning. Hub revisions get their step from the same name rules
(``step1000`` -> 1000; ``main`` or a commit hash -> unknown). The ``final`` model of a run
folder takes its step only from its own trainer_state.json (the run folder's name says
nothing about steps); without one its step is unknown, which sorts it after every checkpoint.

Order: by step, unknown steps last, ties by label. Labels are the folder name (the revision
for hub checkpoints), sanitised to one safe path component; when two checkpoints would share
a label, parent folder names are prepended, joined with ``--`` (``runA--checkpoint-10``;
a ``/`` would nest results folders). Labels are compared case-insensitively because results
may live on a case-insensitive file system. The same checkpoint named twice is kept once.

Discovery never drops a checkpoint because its files are broken (a save killed half-way):
:func:`split_loadable` sorts those out so a sweep can report and skip them.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from harness.checkpoints.folders import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    StrPath,
    inspect_checkpoint,
    read_json_object,
    state_step,
    weight_files,
)
from harness.errors import CheckpointError

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Checkpoint:
    """One model state to evaluate.

    Attributes:
        label: short name used in results paths (``checkpoint-500``, ``step143000``).
        step: training step, or None when unknown (sorted last).
        model: local folder or hub name of the full model; for an adapter, its base model.
        revision: hub revision (Pythia-style ``name@step1000``), None for local folders.
        adapter: folder of a PEFT adapter applied over ``model``, or None.
    """

    label: str
    step: int | None
    model: str
    revision: str | None = None
    adapter: str | None = None



# HF Trainer's own pattern for the folders it saves (transformers.trainer_utils).
_TRAINER_CHILD = re.compile(r"^checkpoint-\d+$")
# Names that mark a folder as a checkpoint even when it holds no model files (yet).
_CHECKPOINT_NAME = re.compile(r"^(?:checkpoint|(?:global_)?step)[-_]?\d+$", re.IGNORECASE)
# Tried in order; the first match gives the step.
_STEP_PATTERNS = (
    re.compile(r"^checkpoint[-_]?(\d+)$", re.IGNORECASE),
    # step500, global_step500, step-500, OLMo's stage1-step1000-tokens4B
    re.compile(r"(?:^|[^a-z0-9])(?:global_)?step[-_]?(\d+)", re.IGNORECASE),
    re.compile(r"^(\d+)$"),
    re.compile(r"-(\d+)$"),
)
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$")
_UNSAFE_LABEL_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class _Found(NamedTuple):
    """A checkpoint before labelling; ``names`` runs from its own name outwards (parents)."""

    step: int | None
    model: str
    revision: str | None
    adapter: str | None
    names: tuple[str, ...]


# --------------------------------------------------------------------------- public API


def discover(
    spec: StrPath | Sequence[StrPath], *, base_model: str | None = None
) -> list[Checkpoint]:
    """Resolve a ``--checkpoints`` spec into checkpoints ordered by step.

    See the module docstring for the accepted entries, the step and label rules.

    Args:
        spec: a comma-separated string, one path, or a sequence of entries.
        base_model: base model (local folder or hub name) for PEFT adapter folders; it
            overrides the ``base_model_name_or_path`` recorded in ``adapter_config.json``
            (e.g. to point at a local copy). Ignored for full models.

    Returns:
        Every checkpoint found, broken ones included (see :func:`split_loadable`), ordered
        by step with unknown steps last and ties broken by label.

    Raises:
        CheckpointError: an empty spec, a path that does not exist, a glob that matches
            nothing, a folder holding no checkpoints, an adapter whose base model is unknown.
    """
    found: list[_Found] = []
    for entry in _entries(spec):
        found.extend(_resolve(entry, base_model))
    # The same checkpoint reached twice (a glob and an explicit path) is evaluated once.
    unique: list[_Found] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    for f in found:
        if (f.model, f.revision, f.adapter) not in seen:
            seen.add((f.model, f.revision, f.adapter))
            unique.append(f)
    labels = _unique_labels([f.names for f in unique])
    checkpoints = [
        Checkpoint(label=label, step=f.step, model=f.model, revision=f.revision, adapter=f.adapter)
        for f, label in zip(unique, labels)
    ]
    return sorted(checkpoints, key=lambda c: (c.step is None, c.step or 0, c.label))


def split_loadable(
    checkpoints: Iterable[Checkpoint],
) -> tuple[list[Checkpoint], list[tuple[Checkpoint, str]]]:
    """Separate checkpoints that look loadable from broken ones, keeping their order.

    Returns ``(loadable, broken)`` where each broken entry carries the one-line reason from
    :func:`inspect_checkpoint` (prefixed ``adapter:`` or ``base model:`` for adapters), for
    the runner to report before skipping it. Hub models are not inspected (no download
    here): their problems surface when they are loaded.
    """
    loadable: list[Checkpoint] = []
    broken: list[tuple[Checkpoint, str]] = []
    for checkpoint in checkpoints:
        problem = _checkpoint_problem(checkpoint)
        if problem is None:
            loadable.append(checkpoint)
        else:
            broken.append((checkpoint, problem))
    return loadable, broken


# --------------------------------------------------------------------------- spec entries


def _entries(spec: StrPath | Sequence[StrPath]) -> list[str]:
    if isinstance(spec, str):
        entries = [part.strip() for part in spec.split(",")]
    elif isinstance(spec, os.PathLike):
        entries = [os.fspath(spec)]
    else:
        entries = [os.fspath(item).strip() for item in spec]
    entries = [entry for entry in entries if entry]
    if not entries:
        raise CheckpointError(f"no checkpoints given (spec {spec!r})")
    return entries


def why_not_loaded(model: str, error: BaseException) -> str:
    """Why ``model`` (a folder or hub name) did not load, in one line for the console.

    A local path that is missing or holds no model says so (:func:`inspect_checkpoint`);
    a hub model that is neither on disk nor in the Hugging Face cache while the hub cannot be
    reached (no network, or ``HF_HUB_OFFLINE``) gets what to do about it; an engine's settings
    refused by pydantic (vLLM's configs) each field and why; any other error its first line
    (transformers' messages run over several lines with links)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    if _is_local_form(model):
        problem = inspect_checkpoint(os.path.expanduser(model))
        if problem:
            return f"{model}: {problem}"
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, LocalEntryNotFoundError):
            return (f"{model} is not on this machine (no such folder, not in the Hugging Face cache) and "
                    f"the hub cannot be reached: download it where there is a network (hf download {model}) "
                    "or give a local folder")
        cause = cause.__cause__ or cause.__context__
    if callable(getattr(error, "errors", None)) and hasattr(error, "title"):  # a pydantic ValidationError
        fields = "; ".join(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in error.errors())
        return f"{error.title}: {fields}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _resolve(entry: str, base_model: str | None) -> list[_Found]:
    path = Path(os.path.expanduser(entry))
    # An existing path wins over every other reading, even if its name has '@' or '*'.
    if path.exists():
        return _local_entry(path, entry, base_model, required=True)
    if glob.has_magic(entry):
        return _glob_entry(entry, base_model)
    name, at, revision = entry.partition("@")
    if _is_local_form(name):
        if at:
            raise CheckpointError(
                f"checkpoint {entry!r}: {name!r} is a local path; @revision only applies to "
                "hub models"
            )
        raise CheckpointError(f"checkpoint path {entry!r} does not exist")
    if not _HUB_NAME.match(name):
        raise CheckpointError(
            f"checkpoint {entry!r} is neither an existing path, a glob that matches, "
            "nor a hub model (org/name[@revision])"
        )
    if at and not revision:
        raise CheckpointError(f"checkpoint {entry!r}: empty revision after '@'")
    return [_hub_entry(name, revision or None)]


def _is_local_form(name: str) -> bool:
    """Whether ``name`` must be a local path (see the module docstring)."""
    if name in (".", "..") or name.startswith(("/", "./", "../", "~")):
        return True
    expanded = Path(os.path.expanduser(name))
    return expanded.exists() or (len(expanded.parts) > 1 and Path(expanded.parts[0]).is_dir())


def _hub_entry(name: str, revision: str | None) -> _Found:
    names = tuple(reversed(name.split("/")))
    if revision is None:
        return _Found(None, name, None, None, names)
    return _Found(_step_from_name(revision), name, revision, None, (revision,) + names)


def _glob_entry(pattern: str, base_model: str | None) -> list[_Found]:
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    if not matches:
        raise CheckpointError(f"checkpoint glob {pattern!r} matches nothing")
    found: list[_Found] = []
    for match in matches:
        if os.path.isdir(match):
            found.extend(_local_entry(Path(match), pattern, base_model, required=False))
    if not found:
        shown = ", ".join(matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise CheckpointError(
            f"checkpoint glob {pattern!r} matches no checkpoint folders (it matched {shown})"
        )
    return found


def _local_entry(path: Path, entry: str, base_model: str | None, *, required: bool) -> list[_Found]:
    """The checkpoints of one existing local path; ``required=False`` (glob matches)
    returns nothing for a folder that holds no checkpoint instead of raising."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {entry!r} is a file; expected a folder")
    # abspath, not resolve(): keep the user's names (a symlinked "latest" stays "latest").
    path = Path(os.path.abspath(path))
    children = sorted(c for c in path.iterdir() if _TRAINER_CHILD.match(c.name) and c.is_dir())
    if children:
        found = [one for one in (_child(child, base_model) for child in children) if one is not None]
        if _holds_final_model(path):
            final_step = state_step(path)
            found.append(_folder(path, base_model, final_step, ("final",) + _path_names(path)))
        return found
    if _has_model_files(path) or _CHECKPOINT_NAME.match(path.name):
        return [_folder(path, base_model, _folder_step(path), _path_names(path))]
    if not required:
        return []
    raise CheckpointError(
        f"no checkpoints in {entry!r}: expected checkpoint-N folders (HF Trainer layout), "
        f"a model (config.json + weights) or a PEFT adapter (adapter_config.json); "
        f"for other layouts pass a glob such as {os.path.join(entry, '*')!r}"
    )


def _child(child: Path, base_model: str | None) -> _Found | None:
    """A run folder's ``checkpoint-N`` child; None when it vanished while it was read (a
    trainer's ``save_total_limit`` rotation between listing the run and reading the child)."""
    try:
        return _folder(child, base_model, _folder_step(child), _path_names(child))
    except CheckpointError:
        if child.exists():
            raise
        return None


def _folder(path: Path, base_model: str | None, step: int | None, names: tuple[str, ...]) -> _Found:
    if (path / ADAPTER_CONFIG).exists():
        base, revision = _adapter_base(path, base_model)
        return _Found(step, base, revision, str(path), names)
    return _Found(step, str(path), None, None, names)


def _adapter_base(adapter: Path, base_model: str | None) -> tuple[str, str | None]:
    """The base model (and its hub revision) an adapter applies to."""
    if base_model:
        return base_model, None
    config, problem = read_json_object(adapter / ADAPTER_CONFIG)
    if problem:
        raise CheckpointError(
            f"adapter {str(adapter)!r}: {problem}, so its base model is unknown; pass base_model"
        )
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise CheckpointError(
            f"adapter {str(adapter)!r} does not name its base model "
            "(no base_model_name_or_path in adapter_config.json); pass base_model"
        )
    # PEFT records the base model's hub revision beside its name.
    revision = config.get("revision")
    return base, revision if isinstance(revision, str) and revision else None


def _path_names(path: Path) -> tuple[str, ...]:
    return tuple(part for part in reversed(path.parts) if part != path.anchor)


# --------------------------------------------------------------------------- files


def _has_model_files(folder: Path) -> bool:
    return (
        (folder / "config.json").exists()
        or (folder / ADAPTER_CONFIG).exists()
        or bool(weight_files(folder))
        or any((folder / name).exists() for name in ADAPTER_WEIGHTS)
    )


def _holds_final_model(folder: Path) -> bool:
    """A complete model or adapter saved at the top of a run folder (``trainer.save_model``)."""
    if (folder / ADAPTER_CONFIG).is_file():
        return any((folder / name).is_file() for name in ADAPTER_WEIGHTS)
    return (folder / "config.json").is_file() and bool(weight_files(folder))


def _checkpoint_problem(checkpoint: Checkpoint) -> str | None:
    if checkpoint.adapter is not None:
        problem = inspect_checkpoint(checkpoint.adapter)
        if problem:
            return f"adapter: {problem}"
    if checkpoint.revision is not None or not _is_local_form(checkpoint.model):
        return None
    problem = inspect_checkpoint(os.path.expanduser(checkpoint.model))
    if problem and checkpoint.adapter is not None:
        return f"base model: {problem}"
    return problem


# --------------------------------------------------------------------------- steps


def _step_from_name(name: str) -> int | None:
    for pattern in _STEP_PATTERNS:
        match = pattern.search(name)
        if match:
            return int(match.group(1))
    return None


def _folder_step(folder: Path) -> int | None:
    """trainer_state.json's global_step, else the step in the folder name."""
    recorded = state_step(folder)
    name_step = _step_from_name(folder.name)
    if recorded is not None and name_step is not None and recorded != name_step:
        log.warning(
            "%s: trainer_state.json says step %d, the folder name says %d; using %d",
            folder, recorded, name_step, recorded,
        )
    return recorded if recorded is not None else name_step


# --------------------------------------------------------------------------- labels


def _safe_component(name: str) -> str:
    # Leading dots would make hidden folders or "." / ".."; keep to a portable alphabet.
    return _UNSAFE_LABEL_CHARS.sub("_", name).lstrip(".") or "checkpoint"


def _unique_labels(names: list[tuple[str, ...]]) -> list[str]:
    """The shortest ``parent--name`` labels that tell the checkpoints apart.

    Only colliding labels grow, one parent at a time; labels that still collide once their
    names run out (``a b`` and ``a_b`` sanitise alike) get ``-2``, ``-3``... suffixes.
    """
    depth = [1] * len(names)

    def label(i: int) -> str:
        return "--".join(_safe_component(n) for n in reversed(names[i][: depth[i]]))

    while True:
        groups: dict[str, list[int]] = defaultdict(list)
        for i in range(len(names)):
            groups[label(i).casefold()].append(i)
        grow = [
            i for group in groups.values() if len(group) > 1
            for i in group if depth[i] < len(names[i])
        ]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    labels = [label(i) for i in range(len(names))]
    taken = {text.casefold() for text in labels}
    seen: set[str] = set()
    for i, text in enumerate(labels):
        if text.casefold() in seen:
            number = 2
            while f"{text}-{number}".casefold() in taken:
                number += 1
            labels[i] = f"{text}-{number}"
            taken.add(labels[i].casefold())
        seen.add(labels[i].casefold())
    return labels
