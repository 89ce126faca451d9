"""The demo's finetuned runs remember the base weights they started from (harness.demo.run)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from harness.demo.recipe import DemoSettings


def test_a_finetuned_run_is_redone_when_its_base_weights_change(tmp_path, monkeypatch):
    """A base pretrained again replaces the old one in place: same path, other weights."""
    import harness.training.run
    from harness.demo import run as demo_run
    import torch
    from safetensors.torch import save_file

    from harness.demo.recipe import RUNS, DemoData

    finetuned = []

    def finetune(config):  # what the real one leaves: its last checkpoint and its settings
        finetuned.append(config.seed)
        (Path(config.output_dir) / f"checkpoint-{config.max_steps}").mkdir(parents=True)
        (Path(config.output_dir) / "finetune_config.json").write_text(json.dumps(dataclasses.asdict(config)))

    monkeypatch.setattr(harness.training.run, "run_finetune", finetune)
    settings = DemoSettings(out=str(tmp_path), quick=True)
    base = tmp_path / "base"
    base.mkdir()
    save_file({"weight": torch.zeros(4, 4)}, str(base / "model.safetensors"))
    data = DemoData(tmp_path / "train.jsonl", str(tmp_path / "cf.jsonl"))
    results = tmp_path / "results" / "standard" / "seed-0"

    def run_it():
        demo_run._finetune(settings, RUNS[0], 0, base, data, tmp_path)

    run_it()
    results.mkdir(parents=True)
    run_it()
    assert finetuned == [0] and results.is_dir()  # cached: same settings, same base weights
    save_file({"weight": torch.ones(4, 4)}, str(base / "model.safetensors"))
    run_it()
    assert finetuned == [0, 0] and not results.exists()  # redone, its old results dropped
