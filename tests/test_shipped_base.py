"""The demo's base with default settings ships with the harness (harness.demo.pretrain):
copied instead of trained, only onto the data it was trained on, and what its record says."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from harness.demo import pretrain as P
from harness.demo.recipe import DemoSettings
from harness.errors import DemoError


class Trained(Exception):
    """Raised instead of pretraining: the tests only need to know that it would have started."""


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise Trained

    monkeypatch.setattr(P, "make_model", refuse)


def test_a_base_ships_for_the_default_settings_and_matches_the_data_this_code_generates():
    folder = P.shipped_base(P.PretrainConfig())
    assert folder is not None, (
        "the shipped base no longer matches the data the demo trains on (the world or the corpus code changed): "
        "pretrain it again with `python -m harness.demo.pretrain harness/demo/bases/<settings hash> --force` "
        "(remove the old folder if the hash changed) and regenerate the README's demo numbers")
    info = P.read_info(folder)
    assert info["settings_hash"] == P.PretrainConfig().settings_hash() == folder.name
    assert info["cpu"] and info["date"]


def test_the_shipped_base_recalls_and_reads_as_its_record_says():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.data import world as W

    config = P.PretrainConfig()
    folder = P.shipped_base(config)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    scores = P.check(model, tokenizer, W.make_world(config.world_seed), config.n_open_book_check, config.restate)
    recorded = P.read_info(folder)["history"][-1]
    # 800 greedy argmaxes: another CPU's rounding may flip a few near ties (a wrong file misses by far more)
    assert scores["recall"] == pytest.approx(recorded["recall"], abs=0.02)
    assert scores["open_book"] == pytest.approx(recorded["open_book"], abs=0.02)


def test_pretraining_with_default_settings_copies_the_shipped_base(tmp_path, no_training):
    shipped = P.shipped_base(P.PretrainConfig())
    result = P.pretrain(tmp_path / "base")
    assert result.shipped and result.cached and result.steps == P.read_info(shipped)["steps"]
    recorded = P.read_info(shipped)
    assert result.made_on == f"{recorded['cpu']}, {recorded['date']}"
    assert (tmp_path / "base" / "model.safetensors").read_bytes() == (shipped / "model.safetensors").read_bytes()
    assert P.read_info(tmp_path / "base")["shipped"] is True
    copied = (tmp_path / "base" / "model.safetensors").stat().st_ino
    assert P.pretrain(tmp_path / "base").shipped  # reused as it is, not copied again
    assert (tmp_path / "base" / "model.safetensors").stat().st_ino == copied
    with pytest.raises(Trained):
        P.pretrain(tmp_path / "base", force=True)
    with pytest.raises(Trained):  # a copy of the shipped base is not what --pretrain asks for
        P.pretrain(tmp_path / "base", shipped=False)


def test_a_base_pretrained_here_is_kept_and_other_data_trains_a_new_one(tmp_path, monkeypatch, no_training):
    shipped = P.shipped_base(P.PretrainConfig())
    here = tmp_path / "base"
    shutil.copytree(shipped, here)
    info = {**P.read_info(shipped), "cpu": "this machine", "date": "today"}
    (here / P.INFO_FILE).write_text(json.dumps(info))
    result = P.pretrain(here)  # a demo folder resumes on the weights it began with
    assert not result.shipped and result.made_on == "this machine, today"
    assert not P.pretrain(here, shipped=False).shipped  # --pretrain: a base trained here is what it asks for
    monkeypatch.setattr(P, "data_fingerprint", lambda config: "other data")
    assert P.shipped_base(P.PretrainConfig()) is None
    with pytest.raises(Trained):
        P.pretrain(tmp_path / "elsewhere")


def test_a_copy_of_a_read_only_install_is_writable(tmp_path, monkeypatch, no_training):
    source = tmp_path / "installed" / P.PretrainConfig().settings_hash()
    shutil.copytree(P.shipped_base(P.PretrainConfig()), source)
    for path in [*source.iterdir(), source]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    monkeypatch.setattr(P, "SHIPPED_BASES", source.parent)
    assert P.pretrain(tmp_path / "base").shipped
    assert all(path.stat().st_mode & 0o200 for path in [tmp_path / "base", *(tmp_path / "base").iterdir()])
    source.chmod(0o755)


def test_the_demo_says_its_base_was_shipped_and_pretrain_is_for_the_world_model_only(tmp_path, no_training):
    from harness.demo.recipe import _pretrained_base

    base = _pretrained_base(DemoSettings(out=str(tmp_path)), tmp_path)
    assert "shipped with the harness (pretrained on " in base.description
    assert "--pretrain trains it here" in base.description
    with pytest.raises(Trained):
        _pretrained_base(DemoSettings(out=str(tmp_path), pretrain=True), tmp_path)
    with pytest.raises(DemoError, match="--pretrain: only the world model"):
        DemoSettings(model="smollm2", pretrain=True)


def test_a_finetuned_run_is_redone_when_its_base_weights_change(tmp_path, monkeypatch):
    """`--pretrain` replaces a shipped base in place: same path, other weights."""
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


def test_a_base_finished_but_not_yet_put_in_place_is_kept(tmp_path, no_training):
    local = {**P.read_info(P.shipped_base(P.PretrainConfig())), "cpu": "this machine", "date": "today"}
    partial = tmp_path / "base.partial"
    shutil.copytree(P.shipped_base(P.PretrainConfig()), partial)
    (partial / P.INFO_FILE).write_text(json.dumps(local))
    result = P.pretrain(tmp_path / "base")  # stopped after writing pretrain.json, before the rename
    assert result.made_on == "this machine, today" and not partial.exists()
