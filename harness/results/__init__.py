"""A run's results folder: its layout and crash-safe writes (:mod:`~harness.results.folder`),
run.json as a typed record (:mod:`~harness.results.record`), and the typed lines of its sample
and summary files (:mod:`~harness.results.rows`)."""

from harness.results.folder import RECIPE_JSON, RUN_JSON, SAMPLES, SUMMARY, RunDirectory, run_folders
from harness.results.record import CheckpointEntry, RunRecord
from harness.results.rows import SampleKey, SampleRecord, SummaryRow

__all__ = ["RECIPE_JSON", "RUN_JSON", "SAMPLES", "SUMMARY", "CheckpointEntry", "RunDirectory", "RunRecord", "SampleKey",
           "SampleRecord", "SummaryRow", "run_folders"]
