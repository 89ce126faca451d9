"""Checkpoints: what to evaluate, found on disk or on the hub (:mod:`~harness.checkpoints.discovery`),
whether a folder is complete and what training progress it records (:mod:`~harness.checkpoints.folders`),
what each one is (:mod:`~harness.checkpoints.identity`), where a sweep gets them from as they
appear (:mod:`~harness.checkpoints.sources`), and the bundled default model
(:mod:`~harness.checkpoints.bundled`)."""

from harness.checkpoints.discovery import Checkpoint, discover, split_loadable, why_not_loaded
from harness.checkpoints.folders import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, TRAINER_STATE, inspect_checkpoint,
                                         training_progress)

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "TRAINER_STATE", "Checkpoint", "discover", "inspect_checkpoint",
           "split_loadable", "training_progress", "why_not_loaded"]
