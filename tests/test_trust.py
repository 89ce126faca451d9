"""Results you can trust, round 2 (issue 26): no merged runs, no stale samples.

Each test reproduces one way a results folder could hold a wrong number without saying so:
two runs merged into one curve, ``--overwrite`` that did nothing, a partly changed model served
old samples, adapters over other hub bases taken as one, samples of old scoring rules, training
progress read from folders that changed since, labels that moved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from handmade import run_json
from harness.checkpoints import Checkpoint
from harness.checkpoints.fingerprints import tensor_hashes, weights_fingerprint
from harness.checkpoints.identity import CheckpointIdentity, checkpoint_weights, hub_revision
from harness.errors import RunError
from harness.reports.runs import load_results
from harness.results import RunDirectory
from harness.scoring import SCORER_VERSION
from harness.sweep.evaluate import evaluate
from test_resume import CountingEngine, config


def copy_run(source: Path, target: Path, steps: dict[int, int]) -> Path:
    """``target/checkpoint-<new>`` copied from ``source/checkpoint-<old>`` for each old: new."""
    for old, new in steps.items():
        folder = target / f"checkpoint-{new}"
        shutil.copytree(source / f"checkpoint-{old}", folder)
        state = json.loads((folder / "trainer_state.json").read_text())
        (folder / "trainer_state.json").write_text(json.dumps({**state, "global_step": new}))
    return target


def change_one_small_tensor(folder: Path) -> str:
    """Change one norm weight of the model in ``folder`` in place; its name."""
    path = folder / "model.safetensors"
    tensors = load_file(path)
    name = next(n for n in sorted(tensors) if "norm" in n)
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, path, metadata={"format": "pt"})
    return name


# ----- 1. one folder, one run -----------------------------------------------------------------


def test_a_second_run_into_the_same_folder_is_refused_unless_appended(llama_run, tmp_path):
    a = copy_run(llama_run, tmp_path / "A", {10: 10, 20: 20})
    b = copy_run(llama_run, tmp_path / "B", {30: 15, 20: 25})
    output = tmp_path / "results"
    evaluate(config(output, checkpoints=str(a)), progress=False)
    summary = (output / "summary.jsonl").read_text()
    engine = CountingEngine()
    with pytest.raises(RunError) as refused:
        evaluate(config(output, checkpoints=str(b)), backend=engine, progress=False)
    message = str(refused.value)
    assert str(output) in message and "checkpoint source" in message and "--append" in message
    assert str(a.resolve()) in message and str(b.resolve()) in message
    assert engine.calls["load"] == 0 and (output / "summary.jsonl").read_text() == summary

    evaluate(config(output, checkpoints=str(b), append=True), progress=False)
    record = run_json(output)
    assert [i["config"]["checkpoints"] for i in record["invocations"]] == [str(a), str(b)]
    assert all(i["finished"] for i in record["invocations"])
    assert {e["step"] for e in record["checkpoints"]} == {10, 15, 20, 25}
    # the first command again is a resume of the folder's own run, not another run
    engine = CountingEngine()
    evaluate(config(output, checkpoints=str(a)), backend=engine, progress=False)
    assert engine.calls["load"] == 0 and len(run_json(output)["invocations"]) == 3


def test_another_plan_is_refused_naming_the_setting(llama_run, tmp_path):
    output = tmp_path / "results"
    model = str(llama_run / "checkpoint-10")
    evaluate(config(output, model=model, limit=2), progress=False)
    with pytest.raises(RunError, match=r"another plan \(limit: 2 -> 3\).*--append"):
        evaluate(config(output, model=model, limit=3), progress=False)
    with pytest.raises(RunError, match="seed: 0 -> 1"):
        evaluate(config(output, model=model, limit=2, seed=1), progress=False)


def test_a_folder_where_nothing_was_evaluated_may_change_its_plan(llama_run, tmp_path):
    output = tmp_path / "results"
    model = str(llama_run / "checkpoint-10")
    with pytest.raises(RunError, match="longer than"):
        evaluate(config(output, model=model, backend_options={"max_model_len": 8}), progress=False)
    evaluate(config(output, model=model, limit=2), progress=False)
    assert len(run_json(output)["invocations"]) == 2


# ----- 2. --overwrite discards every label named ----------------------------------------------


def test_overwrite_evaluates_again_when_nothing_changed(llama_run, tmp_path):
    output = tmp_path / "results"
    model = str(llama_run / "checkpoint-10")
    evaluate(config(output, model=model), progress=False)
    engine = CountingEngine()
    evaluate(config(output, model=model, overwrite=["checkpoint-10"]), backend=engine, progress=False)
    assert engine.calls["generate"] == 3 and engine.calls["loglikelihood"] == 3
    lines = RunDirectory(output).samples_file("checkpoint-10", "cf_world_facts").read_text().splitlines()
    assert len(lines) == 3


# ----- 3. every byte is fingerprinted ---------------------------------------------------------


def test_a_partly_changed_model_is_not_served_old_samples(llama_run, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(llama_run / "checkpoint-10", model)
    output = tmp_path / "results"
    evaluate(config(output, model=str(model)), progress=False)
    before = tensor_hashes(model / "model.safetensors")
    changed = change_one_small_tensor(model)
    after = tensor_hashes(model / "model.safetensors")
    assert [name for name in after if after[name] != before.get(name)] == [changed]
    with pytest.raises(RunError, match="full weights hash"):
        evaluate(config(output, model=str(model)), progress=False)
    assert run_json(output)["config"]["fingerprint"] == "full"


def test_full_fingerprints_see_a_change_that_sampling_misses(tmp_path):
    import torch

    folder = tmp_path / "big"
    folder.mkdir()
    tensors = {"a_big": torch.zeros(4 << 20, dtype=torch.uint8), "b_norm": torch.ones(8)}
    save_file(tensors, folder / "model.safetensors")
    before = {kind: weights_fingerprint(folder, kind=kind) for kind in ("full", "sampled")}
    tensors["a_big"][1_000_000] = 1  # between two of the 16 sampled blocks of this 4 MiB file
    save_file(tensors, folder / "model.safetensors")
    assert weights_fingerprint(folder, kind="sampled") == before["sampled"]
    assert weights_fingerprint(folder, kind="full") != before["full"]
    assert before["full"].startswith("full:") and before["sampled"].startswith("sampled:")


def test_sampled_fingerprints_are_an_explicit_choice(llama_run, tmp_path):
    output = tmp_path / "results"
    evaluate(config(output, model=str(llama_run / "checkpoint-10"), fingerprint="sampled"), progress=False)
    (entry,) = run_json(output)["checkpoints"]
    assert entry["weights"].startswith("sampled:") and entry["full_weights"] is None
    with pytest.raises(ValueError, match="fingerprint"):
        weights_fingerprint(llama_run / "checkpoint-10", kind="some")


# ----- 4. hub bases are named with their revision ---------------------------------------------


def test_an_adapter_over_another_hub_base_is_another_checkpoint(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    a = Checkpoint(label="final", step=None, model="org/base-A", revision="step1000", adapter=str(adapter))
    b = Checkpoint(label="final", step=None, model="org/base-B", revision="step9000", adapter=str(adapter))
    weights_a, weights_b = checkpoint_weights(a), checkpoint_weights(b)
    assert weights_a.startswith("hub:org/base-A@step1000+") and weights_a != weights_b
    identity = dict(engine="hf", engine_version=None, dtype="float32", device="cpu", adapter=str(adapter))
    first = CheckpointIdentity(model=a.model, revision=a.revision, weights=weights_a, **identity)
    second = CheckpointIdentity(model=b.model, revision=b.revision, weights=weights_b, **identity)
    assert second.changes_from(first) and not first.changes_from(first)


def test_a_hub_revision_resolves_to_its_commit_in_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--base"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "step1000").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_revision("org/base", "step1000") == commit
    assert hub_revision("org/unknown", "v2") == "v2"  # not cached: as given, nothing downloaded


# ----- 11. samples of other scoring rules are rescored ----------------------------------------


def test_samples_of_an_earlier_scorer_are_rescored_without_the_engine(llama_run, tmp_path):
    output = tmp_path / "results"
    model = str(llama_run / "checkpoint-10")
    evaluate(config(output, model=model), progress=False)
    run = RunDirectory(output)
    path = run.samples_file("checkpoint-10", "cf_world_facts")
    right = [json.loads(line) for line in path.read_text().splitlines()]
    assert {line["scorer"] for line in right} == {SCORER_VERSION}
    stale = [{**line, "scorer": 1, "scores": {**line["scores"], "hit_context": not line["scores"]["hit_context"],
                                              "ll_margin": 99.0}} for line in right]
    path.write_text("".join(json.dumps(line) + "\n" for line in stale))
    engine = CountingEngine()
    evaluate(config(output, model=model), backend=engine, progress=False)
    assert engine.calls == {"load": 0, "generate": 0, "loglikelihood": 0}
    rescored = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["scores"] for line in rescored] == [line["scores"] for line in right]
    assert {line["scorer"] for line in rescored} == {SCORER_VERSION}


# ----- 13. training progress is recorded when evaluated ---------------------------------------


def test_epochs_survive_a_rotated_checkpoint_folder(llama_run, tmp_path):
    run = copy_run(llama_run, tmp_path / "run", {10: 10, 20: 20})
    output = tmp_path / "results"
    evaluate(config(output, checkpoints=str(run)), progress=False)
    shutil.rmtree(run / "checkpoint-10")  # save_total_limit rotated it away
    state = json.loads((run / "checkpoint-20" / "trainer_state.json").read_text())
    (run / "checkpoint-20" / "trainer_state.json").write_text(json.dumps({**state, "epoch": 9.0}))  # reused
    frame = load_results(output)
    epochs = dict(zip(frame["checkpoint"], frame["epoch"]))
    assert epochs["checkpoint-10"] == pytest.approx(10 / 30) and epochs["checkpoint-20"] == pytest.approx(20 / 30)


# ----- 14. labels are stable for the same checkpoint ------------------------------------------


def test_a_checkpoint_keeps_its_label_when_listed_beside_another_run(llama_run, tmp_path):
    a = copy_run(llama_run, tmp_path / "runA", {10: 10})
    b = copy_run(llama_run, tmp_path / "runB", {20: 10})
    output = tmp_path / "results"
    evaluate(config(output, checkpoints=str(a / "checkpoint-10")), progress=False)
    engine = CountingEngine()
    both = [str(a / "checkpoint-10"), str(b / "checkpoint-10")]
    evaluate(config(output, checkpoints=both, append=True), backend=engine, progress=False)
    assert engine.calls["load"] == 1  # runB's only: runA's is the folder's checkpoint-10
    labels = sorted(entry["label"] for entry in run_json(output)["checkpoints"])
    assert labels == ["checkpoint-10", "runB--checkpoint-10"]


# ----- 6, 7. torn lines: non-ASCII, and left in the file --------------------------------------


def test_a_line_torn_inside_a_multibyte_character_spoils_only_itself(tmp_path, caplog):
    from harness.io import read_jsonl

    path = tmp_path / "samples.jsonl"
    whole = json.dumps({"id": "1", "output": "café"}, ensure_ascii=False).encode()
    torn = json.dumps({"id": "2", "output": "café au lait"}, ensure_ascii=False).encode()
    path.write_bytes(whole + b"\n" + torn[: torn.index("é".encode()) + 1])  # cut between é's two bytes
    assert read_jsonl(path) == [{"id": "1", "output": "café"}]
    assert "line 2 is not a complete record" in caplog.text


def test_after_a_resume_every_samples_line_parses(llama_run, tmp_path, caplog):
    output = tmp_path / "results"
    model = str(llama_run / "checkpoint-10")
    evaluate(config(output, model=model), progress=False)
    path = RunDirectory(output).samples_file("checkpoint-10", "cf_world_facts")
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b'"prompt"') + 15])  # killed while writing the last line
    evaluate(config(output, model=model), progress=False)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(isinstance(json.loads(line), dict) for line in lines)
    assert "dropped a fragment" in caplog.text and str(path) in caplog.text


# ----- 12. numbers are matched as numbers ------------------------------------------------------


@pytest.mark.parametrize(("output", "answer", "hit"), [
    ("about 2.5 million people", "5", False),
    ("it had 2,500 inhabitants", "500", False),
    ("it was 5 degrees", "−5", False),
    ("it was −5 degrees", "-5", True),
    ("1000 soldiers", "1,000", True),
    ("1,000.0 soldiers", "1000", True),
    ("the 5th of May", "5", False),
    ("pages 5-10", "10", True),
    ("Paris", "Paris", True),
])
def test_numbers_are_matched_as_numbers(output, answer, hit):
    from harness.matching import contains

    assert contains(output, answer) is hit


def test_a_raw_prefix_number_ends_where_its_digits_end():
    from harness.matching import raw_prefix

    assert not raw_prefix("120", "12") and raw_prefix(" 12, since", "12")
    assert raw_prefix("There", "The")  # letters keep the paper's rule: no word boundary


def test_a_context_answer_inside_the_real_answer_is_not_a_context_hit():
    """Context "Cairo", real answer "New Cairo", output "New Cairo": the output gives the real
    answer; "Cairo" appears only inside it (docs/metrics.md)."""
    from harness.scoring import score_generation

    scores = score_generation({"context": ("Cairo",), "parametric": ("New Cairo",)}, "New Cairo")
    assert scores["hit_context"] is False and scores["hit_parametric"] is True and scores["outcome"] == "parametric"


# ----- 9. an unknown step is never logged at step 0 -------------------------------------------


def test_a_checkpoint_without_a_step_is_not_logged_at_step_0(llama_run, tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from harness.sweep.config import RunConfig
    from harness.training.evaluator import EvaluatorProcess

    named = tmp_path / "base"  # a hand-named folder: no step
    shutil.copytree(llama_run / "checkpoint-10", named)
    (named / "trainer_state.json").unlink()
    logs, output = tmp_path / "tb", tmp_path / "out"
    evaluate(RunConfig(output=str(output), checkpoints=f"{named},{llama_run / 'checkpoint-20'}",
                       tasks=[str(Path(__file__).parent / "data" / "cf_world_facts.json")], backend="hf",
                       conjugates=["en"], log_to=[f"tensorboard={logs}"]), progress=False)
    events = EventAccumulator(str(logs))
    events.Reload()
    assert [e.step for e in events.Scalars("ctx/cf_world_facts/conflicting/context_hit_rate")] == [20]
    assert "checkpoint base has no known training step" in caplog.text
    follower = EvaluatorProcess.__new__(EvaluatorProcess)
    follower.output = output
    assert [step for step, _ in follower.metrics_by_step()] == [20]
