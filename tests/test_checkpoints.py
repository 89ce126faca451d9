"""Checkpoint discovery on tiny fake folders: only JSON and placeholder weight files."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from harness.checkpoints import (
    Checkpoint,
    discover,
    inspect_checkpoint,
    split_loadable,
    training_progress,
)
from harness.errors import CheckpointError

BASE = "EleutherAI/pythia-160m"
#: A safetensors file with no tensors: its header is the JSON ``{}``.
EMPTY_SAFETENSORS = (2).to_bytes(8, "little") + b"{}"


def make_model(folder: Path, step: int | None = None) -> Path:
    """A folder that passes for a full model: config.json with a model_type + weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(EMPTY_SAFETENSORS)
    if step is not None:
        write_state(folder, step)
    return folder


def make_adapter(folder: Path, base: str | None = BASE, step: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 8}
    if base is not None:
        config["base_model_name_or_path"] = base
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    if step is not None:
        write_state(folder, step)
    return folder


def write_state(folder: Path, step: int, **extra) -> None:
    state = {"global_step": step, "epoch": step / 100, "num_input_tokens_seen": 0, **extra}
    (folder / "trainer_state.json").write_text(json.dumps(state))


def make_run(run: Path, steps=(10, 20, 100)) -> Path:
    for step in steps:
        make_model(run / f"checkpoint-{step}", step)
    return run


def summary(checkpoints: list[Checkpoint]) -> list[tuple[str, int | None]]:
    return [(c.label, c.step) for c in checkpoints]


# --------------------------------------------------------------------------- run folders


def test_run_folder_sorts_numerically(tmp_path):
    run = make_run(tmp_path / "out", steps=(100, 20, 10))
    checkpoints = discover(str(run))
    assert summary(checkpoints) == [
        ("checkpoint-10", 10), ("checkpoint-20", 20), ("checkpoint-100", 100),
    ]
    assert checkpoints[0] == Checkpoint("checkpoint-10", 10, str(run / "checkpoint-10"))


def test_step_from_folder_name_without_trainer_state(tmp_path):
    for step in (5, 50):
        make_model(tmp_path / "out" / f"checkpoint-{step}")
    assert summary(discover(tmp_path / "out")) == [("checkpoint-5", 5), ("checkpoint-50", 50)]


@pytest.mark.parametrize(
    ("name", "step"),
    [("step500", 500), ("global_step500", 500), ("model-500", 500), ("step1000-tokens4B", 1000),
     ("500", 500), ("best", None)],
)
def test_step_from_other_folder_names(tmp_path, name, step):
    make_model(tmp_path / name)
    assert summary(discover(str(tmp_path / name))) == [(name, step)]


def test_trainer_state_step_wins_over_folder_name(tmp_path, caplog):
    folder = make_model(tmp_path / "checkpoint-500", step=510)
    with caplog.at_level(logging.WARNING, logger="harness.checkpoints"):
        assert discover(str(folder))[0].step == 510
    assert "510" in caplog.text and "500" in caplog.text


def test_unreadable_trainer_state_falls_back_to_folder_name(tmp_path):
    folder = make_model(tmp_path / "checkpoint-500")
    (folder / "trainer_state.json").write_text("{not json")
    assert discover(str(folder))[0].step == 500


def test_final_model_with_trainer_state(tmp_path):
    run = make_run(tmp_path / "out", steps=(10, 20))
    make_model(run, step=25)
    checkpoints = discover(str(run))
    assert summary(checkpoints) == [("checkpoint-10", 10), ("checkpoint-20", 20), ("final", 25)]
    assert checkpoints[-1].model == str(run)


def test_final_model_without_trainer_state_sorts_last(tmp_path):
    run = make_run(tmp_path / "run-7", steps=(10, 20))
    make_model(run)  # the run folder's own name ("-7") must not become the final step
    assert summary(discover(str(run)))[-1] == ("final", None)


def test_run_folder_without_final_weights_has_no_final(tmp_path):
    run = make_run(tmp_path / "out", steps=(10,))
    (run / "config.json").write_text(json.dumps({"model_type": "llama"}))
    write_state(run, 10)
    assert summary(discover(str(run))) == [("checkpoint-10", 10)]


def test_broken_checkpoint_folder_is_kept(tmp_path):
    run = make_run(tmp_path / "out", steps=(10, 20))
    (run / "checkpoint-30").mkdir()  # a save killed before any file was written
    labels = [c.label for c in discover(str(run))]
    assert labels == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]


def test_single_model_folder(tmp_path):
    folder = make_model(tmp_path / "my-model")
    assert discover(str(folder)) == [Checkpoint("my-model", None, str(folder))]


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    make_run(tmp_path / "out", steps=(10,))
    monkeypatch.chdir(tmp_path)
    assert discover("./out")[0].model == str(tmp_path / "out" / "checkpoint-10")
    assert discover("out")[0].model == str(tmp_path / "out" / "checkpoint-10")


# --------------------------------------------------------------------------- globs and lists


def test_glob_across_runs_makes_labels_unique(tmp_path):
    make_run(tmp_path / "runs" / "runA", steps=(10, 20))
    make_run(tmp_path / "runs" / "runB", steps=(10,))
    checkpoints = discover(str(tmp_path / "runs" / "*" / "checkpoint-*"))
    assert summary(checkpoints) == [
        ("runA--checkpoint-10", 10), ("runB--checkpoint-10", 10), ("checkpoint-20", 20),
    ]
    assert all("/" not in c.label for c in checkpoints)


def test_labels_grow_until_unique(tmp_path):
    make_run(tmp_path / "a" / "out", steps=(10,))
    make_run(tmp_path / "b" / "out", steps=(10,))
    labels = [c.label for c in discover(str(tmp_path / "*" / "out"))]
    assert labels == ["a--out--checkpoint-10", "b--out--checkpoint-10"]


def test_final_labels_unique_across_runs(tmp_path):
    for name in ("runA", "runB"):
        make_model(make_run(tmp_path / name, steps=(10,)))
    labels = [c.label for c in discover(str(tmp_path / "run*"))]
    assert labels == ["runA--checkpoint-10", "runB--checkpoint-10", "runA--final", "runB--final"]


def test_glob_of_run_folders_skips_non_checkpoint_folders(tmp_path):
    make_run(tmp_path / "runs" / "runA", steps=(10,))
    (tmp_path / "runs" / "logs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("x")
    assert summary(discover(str(tmp_path / "runs" / "*"))) == [("checkpoint-10", 10)]


def test_comma_separated_list(tmp_path):
    first = make_model(tmp_path / "step200")
    second = make_model(tmp_path / "step100")
    checkpoints = discover(f"{first}, {second}")
    assert summary(checkpoints) == [("step100", 100), ("step200", 200)]


def test_sequence_items_are_literal_paths(tmp_path):
    odd = make_model(tmp_path / "a,b-300")
    other = make_model(tmp_path / "c" / "checkpoint-5")
    assert summary(discover([str(odd), other])) == [("checkpoint-5", 5), ("a_b-300", 300)]


def test_same_checkpoint_twice_is_kept_once(tmp_path):
    run = make_run(tmp_path / "out", steps=(10, 20))
    checkpoints = discover([str(run), str(run / "checkpoint-10")])
    assert summary(checkpoints) == [("checkpoint-10", 10), ("checkpoint-20", 20)]


def test_unknown_steps_sort_last_by_label(tmp_path):
    names = ("zeta", "alpha", "checkpoint-3")
    for name in names:
        make_model(tmp_path / name)
    labels = [c.label for c in discover([str(tmp_path / n) for n in names])]
    assert labels == ["checkpoint-3", "alpha", "zeta"]


def test_labels_are_safe_path_components(tmp_path):
    folder = make_model(tmp_path / ".hidden model@v2")
    assert discover([str(folder)])[0].label == "hidden_model_v2"


# --------------------------------------------------------------------------- hub


def test_hub_revisions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoints = discover(f"{BASE}@step2000,{BASE}@step1000")
    assert checkpoints == [
        Checkpoint("step1000", 1000, BASE, revision="step1000"),
        Checkpoint("step2000", 2000, BASE, revision="step2000"),
    ]


def test_hub_name_without_revision_and_revision_without_digits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert discover(BASE) == [Checkpoint("pythia-160m", None, BASE)]
    assert discover(f"{BASE}@main") == [Checkpoint("main", None, BASE, revision="main")]


def test_same_revision_of_two_hub_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoints = discover(f"{BASE}@step1000,EleutherAI/pythia-410m@step1000")
    assert [c.label for c in checkpoints] == ["pythia-160m--step1000", "pythia-410m--step1000"]


def test_hub_and_local_mixed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_model(tmp_path / "out" / "checkpoint-1500")
    checkpoints = discover(f"{BASE}@step1000,out")
    assert [(c.label, c.revision) for c in checkpoints] == [
        ("step1000", "step1000"), ("checkpoint-1500", None),
    ]


# --------------------------------------------------------------------------- adapters


def test_adapter_run_with_base_from_adapter_config(tmp_path):
    run = tmp_path / "lora"
    for step in (20, 10):
        make_adapter(run / f"checkpoint-{step}", step=step)
    checkpoints = discover(str(run))
    assert checkpoints == [
        Checkpoint("checkpoint-10", 10, BASE, adapter=str(run / "checkpoint-10")),
        Checkpoint("checkpoint-20", 20, BASE, adapter=str(run / "checkpoint-20")),
    ]


def test_base_model_argument_overrides_adapter_config(tmp_path):
    adapter = make_adapter(tmp_path / "checkpoint-10")
    base = make_model(tmp_path / "base")
    (checkpoint,) = discover(str(adapter), base_model=str(base))
    assert (checkpoint.model, checkpoint.adapter) == (str(base), str(adapter))


def test_adapter_without_base_model_in_config_takes_argument(tmp_path):
    adapter = make_adapter(tmp_path / "checkpoint-10", base=None)
    assert discover(str(adapter), base_model=BASE)[0].model == BASE


def test_adapter_base_revision_from_adapter_config(tmp_path):
    adapter = make_adapter(tmp_path / "checkpoint-10")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "revision": "step1000"}))
    assert discover(str(adapter))[0].revision == "step1000"


def test_final_adapter_in_run_folder(tmp_path):
    run = tmp_path / "lora"
    make_adapter(run / "checkpoint-10", step=10)
    make_adapter(run, step=12)
    assert summary(discover(str(run))) == [("checkpoint-10", 10), ("final", 12)]


# --------------------------------------------------------------------------- errors


def test_error_missing_path(tmp_path):
    missing = str(tmp_path / "nope")
    expected = re.escape(f"checkpoint path '{missing}' does not exist")
    with pytest.raises(CheckpointError, match=expected):
        discover(missing)


def test_error_missing_path_under_existing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / "out", steps=(10,))
    # Shaped like a hub name, but out/ is here: a typo, not a model to download.
    with pytest.raises(CheckpointError, match="'out/checkpoint-99' does not exist"):
        discover("out/checkpoint-99")


def test_error_neither_path_nor_hub_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="'outt' is neither an existing path"):
        discover("outt")


def test_error_glob_matches_nothing(tmp_path):
    pattern = str(tmp_path / "runs" / "*" / "checkpoint-*")
    with pytest.raises(CheckpointError, match="matches nothing") as error:
        discover(pattern)
    assert pattern in str(error.value)


def test_error_glob_matches_no_checkpoints(tmp_path):
    (tmp_path / "logs").mkdir()
    with pytest.raises(CheckpointError, match="matches no checkpoint folders"):
        discover(str(tmp_path / "l*"))


def test_error_folder_without_checkpoints(tmp_path):
    (tmp_path / "runs" / "runA").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="no checkpoints in .*runs.*pass a glob"):
        discover(str(tmp_path / "runs"))


def test_error_file_instead_of_folder(tmp_path):
    weights = make_model(tmp_path / "m") / "model.safetensors"
    with pytest.raises(CheckpointError, match="is a file; expected a folder"):
        discover(str(weights))


def test_error_adapter_without_base_model(tmp_path):
    adapter = make_adapter(tmp_path / "checkpoint-10", base=None)
    expected = "does not name its base model.*pass base_model"
    with pytest.raises(CheckpointError, match=expected) as error:
        discover(str(adapter))
    assert str(adapter) in str(error.value)


def test_error_adapter_config_unreadable_without_base_model(tmp_path):
    adapter = make_adapter(tmp_path / "checkpoint-10")
    (adapter / "adapter_config.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON.*pass base_model"):
        discover(str(adapter))


def test_error_local_path_with_revision(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_model(tmp_path / "org" / "model")
    with pytest.raises(CheckpointError, match="'org/model' is a local path; @revision"):
        discover("org/model@step10")
    with pytest.raises(CheckpointError, match="@revision only applies to hub models"):
        discover("./elsewhere@step10")


def test_error_empty_revision_and_empty_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="empty revision"):
        discover(f"{BASE}@")
    with pytest.raises(CheckpointError, match="no checkpoints given"):
        discover(" , ")
    with pytest.raises(CheckpointError, match="no checkpoints given"):
        discover([])


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# --------------------------------------------------------------------------- inspection


def test_inspect_loadable_model_and_adapter(tmp_path):
    assert inspect_checkpoint(make_model(tmp_path / "m")) is None
    assert inspect_checkpoint(str(make_adapter(tmp_path / "a"))) is None


def test_inspect_pytorch_bin_weights(tmp_path):
    folder = make_model(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model-00001-of-00001.bin").write_bytes(b"\0")
    assert inspect_checkpoint(folder) is None


def test_inspect_missing_config(tmp_path):
    folder = make_model(tmp_path / "m")
    (folder / "config.json").unlink()
    assert inspect_checkpoint(folder) == "config.json missing"


def test_inspect_bad_json(tmp_path):
    folder = make_model(tmp_path / "m")
    (folder / "config.json").write_text('{"model_type": ')
    reason = inspect_checkpoint(folder)
    assert reason.startswith("config.json is not valid JSON: ") and "\n" not in reason


def test_inspect_config_without_model_type(tmp_path):
    folder = make_model(tmp_path / "m")
    (folder / "config.json").write_text("{}")
    assert inspect_checkpoint(folder) == "config.json has no model_type"


def test_inspect_no_weights(tmp_path):
    folder = make_model(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    (folder / "adapter_model.safetensors").write_bytes(b"\0")  # not a full model's weights
    assert inspect_checkpoint(folder) == "no weights file (*.safetensors, pytorch_model.bin)"


def test_inspect_missing_shard(tmp_path):
    folder = make_model(tmp_path / "m")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert inspect_checkpoint(folder) == (
        "missing weight shards listed in model.safetensors.index.json: "
        "model-00002-of-00002.safetensors"
    )


def test_inspect_adapter_problems(tmp_path):
    adapter = make_adapter(tmp_path / "a")
    (adapter / "adapter_model.safetensors").unlink()
    assert inspect_checkpoint(adapter) == (
        "no adapter weights (adapter_model.safetensors, adapter_model.bin)"
    )
    (adapter / "adapter_config.json").write_text("[]")
    assert inspect_checkpoint(adapter) == "adapter_config.json is not a JSON object"


def test_inspect_missing_folder(tmp_path):
    assert inspect_checkpoint(tmp_path / "gone") == "folder does not exist"


def test_split_loadable_reports_and_keeps_order(tmp_path):
    run = make_run(tmp_path / "out", steps=(10, 20, 30))
    (run / "checkpoint-20" / "config.json").unlink()
    (run / "checkpoint-40").mkdir()
    hub = Checkpoint("step1000", 1000, BASE, revision="step1000")
    loadable, broken = split_loadable([*discover(str(run)), hub])
    assert [c.label for c in loadable] == ["checkpoint-10", "checkpoint-30", "step1000"]
    assert [(c.label, reason) for c, reason in broken] == [
        ("checkpoint-20", "config.json missing"),
        ("checkpoint-40", "config.json missing"),
    ]


def test_split_loadable_adapters(tmp_path):
    good = make_adapter(tmp_path / "checkpoint-10")
    bad = make_adapter(tmp_path / "checkpoint-20")
    (bad / "adapter_model.safetensors").unlink()
    base = make_model(tmp_path / "base")
    on_hub = discover([str(good), str(bad)])
    loadable, broken = split_loadable(on_hub)
    assert loadable == on_hub[:1]
    assert broken[0][1].startswith("adapter: no adapter weights")

    (base / "config.json").unlink()
    loadable, broken = split_loadable(discover(str(good), base_model=str(base)))
    assert loadable == [] and broken[0][1] == "base model: config.json missing"


# --------------------------------------------------------------------------- progress


def test_training_progress(tmp_path):
    folder = make_model(tmp_path / "checkpoint-50")
    assert training_progress(folder) == {}
    write_state(folder, 50)
    assert training_progress(folder) == {"global_step": 50, "epoch": 0.5}
    write_state(folder, 50, num_input_tokens_seen=12800)
    assert training_progress(str(folder)) == {
        "global_step": 50, "epoch": 0.5, "num_input_tokens_seen": 12800,
    }


def test_training_progress_unreadable_file_is_empty(tmp_path):
    folder = make_model(tmp_path / "checkpoint-50")
    (folder / "trainer_state.json").write_text("{")
    assert training_progress(folder) == {}


def test_why_a_model_did_not_load_is_one_line_that_keeps_the_reason():
    """Engine settings vLLM's pydantic configs refuse keep the field and the reason (their
    first line alone, '1 validation error for ModelConfig', says neither)."""
    from harness.checkpoints import why_not_loaded

    pydantic = pytest.importorskip("pydantic")

    class ModelConfig(pydantic.BaseModel):
        max_model_len: pydantic.PositiveInt

    with pytest.raises(pydantic.ValidationError) as refused:
        ModelConfig(max_model_len=0)
    assert why_not_loaded("m", refused.value) == "ModelConfig: max_model_len: Input should be greater than 0"
    assert why_not_loaded("m", OSError("first line\nsecond line")) == "first line"


def test_a_safetensors_file_cut_short_or_garbled_is_named_before_anything_loads(tmp_path, tiny_llama_dir):
    """A copy cut in half, or a garbled header, cost an engine start (and a second one) before
    the load failed with safetensors' words, which name no file."""
    from harness.checkpoints.folders import safetensors_problem

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    assert safetensors_problem(weights) is None and inspect_checkpoint(folder) is None
    weights.write_bytes(good[: len(good) // 2])
    assert inspect_checkpoint(folder).startswith("model.safetensors: cut short: holds ")
    weights.write_bytes((10**12).to_bytes(8, "little") + good[8:])
    assert inspect_checkpoint(folder).startswith("model.safetensors: its header claims 1000000000000 bytes")
    weights.write_bytes(good[:8] + b"#" * 20 + good[28:])
    assert inspect_checkpoint(folder) == "model.safetensors: its header is not JSON: not a safetensors file, or garbled"


def test_an_adapter_checkpoint_deleted_while_its_run_is_discovered_is_left_out(tmp_path, monkeypatch):
    # A trainer rotating checkpoints (save_total_limit) can delete one between the listing of the
    # run folder and the reading of its adapter_config.json: a follower's poll must go on.
    from harness.checkpoints import discovery

    run = tmp_path / "lora"
    for step in (10, 20):
        make_adapter(run / f"checkpoint-{step}", step=step)
    read = discovery.read_json_object

    def read_after_rotation(path):
        if path.parent.name == "checkpoint-10":
            shutil.rmtree(path.parent, ignore_errors=True)
        return read(path)

    monkeypatch.setattr(discovery, "read_json_object", read_after_rotation)
    assert [c.label for c in discover(str(run))] == ["checkpoint-20"]
