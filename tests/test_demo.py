"""`harness demo --quick` end to end from the command line: every stage's outputs, a summary
that agrees with the results files, a console that shows only the harness's own lines (the
engines' go to logs/engine.log; ``-v`` shows them again), and a rerun that skips what is
finished."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from harness.cli import main
from harness.demo import run_demo
from harness.demo.recipe import QUICK, RECIPES, RUNS, DemoSettings
from harness.errors import DemoError
from harness.reports.recipes import detect_inversion
from harness.results import RunDirectory


# A plain progress line (the console is not a terminal here): "pretrain: 120/400 step (3.9 step/s)..."
PROGRESS = re.compile(r"^[^:]+: \d+/\d+ \w+ \(")
# vLLM's own log lines: "INFO 12-02 02:11:41 [config.py:123] ...", from an engine in this process
# "(MainProcess pid=7866) INFO 12-02 ..."
VLLM_LINE = re.compile(r"^(\(\w+ pid=\d+\) )?(INFO|WARNING|DEBUG) \d\d-\d\d \d\d:\d\d:\d\d \[")


def harness(*argv: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return (done.stdout + done.stderr).splitlines()


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    console = harness("demo", "--quick", "--runs", "all", "-o", str(out))
    lines = [line for line in console if not PROGRESS.match(line)]
    assert len(lines) < 80, "\n".join(lines)
    assert not any(VLLM_LINE.match(line) for line in console)
    assert any(VLLM_LINE.match(line) for line in (out / "logs" / "engine.log").read_text().splitlines())
    timings = json.loads((out / "timings.json").read_text())
    summary = (out / "summary.txt").read_text()
    assert summary.strip() in "\n".join(console)
    seeds = QUICK["seeds"]
    assert len(seeds) >= 2

    assert json.loads((out / "base" / "pretrain.json").read_text())["finished"]
    assert len(list((out / "data").glob("train-*.jsonl"))) == 1
    assert len(list((out / "data").glob("counterfactual-*.jsonl"))) == 1
    recipes = {}
    for run in RUNS:
        results = []
        for seed in seeds:
            folder = out / "runs" / run.name / f"seed-{seed}"
            assert sorted(p.name for p in folder.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-10",
                                                                          "checkpoint-20"]
            assert (folder / "mitigations.json").is_file()
            recipes.setdefault(run.name, set()).add(json.loads((folder / "recipe.json").read_text())["recipe"])
            assert json.loads((folder / "recipe.json").read_text())["seed"] == seed
            result = RunDirectory(out / "results" / run.name / f"seed-{seed}")
            rows = result.read_summary()
            assert {r.task for r in rows} == set(RECIPES["world"].probes)
            assert {r.step for r in rows} == {0, 10, 20}
            assert (result.path / "report.html").is_file()
            results.append(result.path)
        # The summary's numbers are the results files' numbers: the recipe's verdict over its
        # seeds, and each seed's own.
        verdict = detect_inversion(results, "world_conflict")
        assert verdict.seeds == tuple(seeds)
        row = next(line for line in summary.splitlines() if line.startswith(run.name + " "))
        assert verdict.verdict in row and verdict.seed_verdicts in row
        assert f"{verdict.curve[0]:.3f}".replace("0.", ".", 1) in row
        for seed, path in zip(seeds, results):
            one = detect_inversion(path, "world_conflict")
            line = next(line for line in summary.splitlines() if line.startswith(f"- {run.name}/seed-{seed}: "))
            assert line.startswith(f"- {run.name}/seed-{seed}: {one.verdict};")
            assert f"first {one.first:.3f}".replace("0.", ".", 1) in line
    # A recipe's seeds are replicates of one recipe (one hash); the four recipes differ.
    assert all(len(hashes) == 1 for hashes in recipes.values())
    assert len(set().union(*recipes.values())) == len(RUNS)
    assert "over 2 finetuning seeds per recipe" in summary and "drop − standard's [95% CI]" in summary
    qk = json.loads((out / "runs" / "qk_only" / "seed-0" / "mitigations.json").read_text())
    assert qk["qk_only"]["trained"]
    # The mitigations went through harness finetune's options, on the standard run's data.
    standard = json.loads((out / "runs" / "standard" / "seed-0" / "finetune_config.json").read_text())
    filtered = json.loads((out / "runs" / "cc_filter" / "seed-0" / "finetune_config.json").read_text())
    assert filtered["dataset"] == standard["dataset"] and standard["filter_non_context_critical"] is None
    assert [json.loads((out / "runs" / "standard" / f"seed-{seed}" / "finetune_config.json").read_text())["seed"]
            for seed in seeds] == seeds
    dropped = json.loads((out / "runs" / "cc_filter" / "seed-0" / "mitigations.json").read_text())
    dropped = dropped["filter_non_context_critical"]
    assert dropped["dropped"] == dropped["candidates"] // 2
    assert f"the filter dropped {dropped['dropped']} of {dropped['candidates']} examples" in summary
    augmented = json.loads((out / "runs" / "cf_augment" / "seed-0" / "mitigations.json").read_text())
    assert augmented["counterfactual_augmentation"]["added"] > 0
    assert f"report: {out / 'compare' / 'compare.html'}" in console
    assert "Recipes over seeds" in (out / "compare" / "compare.html").read_text()
    assert "GPT2LMHeadModel" in summary and "Caveats" in summary
    # The measurement's record, from which docs/readme_numbers.py writes the README's numbers.
    record = json.loads((out / "demo.json").read_text())
    assert record["fresh"] and record["command"] == f"harness demo --quick --runs all -o {out}"
    assert record["seconds"] == timings and record["summary"] == summary.strip()
    assert [row[0] for row in record["table"]] == ["recipe", *(run.name for run in RUNS)]
    assert "cores" in record["cpu"] and record["load_average_before"] is not None

    samples = {p: p.read_text() for p in out.glob("results/*/*/samples/*/*.jsonl")}
    assert len({p.parent.parent.parent for p in samples}) == len(RUNS) * len(seeds)
    # Resumed with -v: every stage cached but one run's results, which an engine computes again
    # (the same samples), its own lines on the console this time.
    shutil.rmtree(out / "results" / "qk_only" / f"seed-{seeds[-1]}")
    verbose = harness("demo", "--quick", "--runs", "all", "-o", str(out), "-v")
    assert any(VLLM_LINE.match(line) for line in verbose)
    again = json.loads((out / "timings.json").read_text())
    assert not json.loads((out / "demo.json").read_text())["fresh"]  # resumed: not a whole run's timings
    assert again["instruction tuning"] < timings["instruction tuning"] / 2
    assert {p: p.read_text() for p in out.glob("results/*/*/samples/*/*.jsonl")} == samples


def test_demo_seeds_and_recipes_are_checked():
    assert DemoSettings().seeds == [0, 1, 2] and DemoSettings().runs == ["standard", "cf_augment"]
    assert DemoSettings(runs=["all"]).runs == [run.name for run in RUNS]
    assert DemoSettings(model="smollm2").seeds == [0]
    for seeds in ([], [1, 1], [-1]):
        with pytest.raises(DemoError, match="--seeds"):
            DemoSettings(seeds=seeds)
    with pytest.raises(DemoError, match="--runs: unknown run"):
        DemoSettings(runs=["standard", "everything"])
    with pytest.raises(DemoError, match=r"--runs: unknown run\(s\) 'standrd' \(did you mean 'standard'"):
        DemoSettings(runs=["standrd"])


@pytest.mark.parametrize("settings, message", [
    (dict(steps=0), "--steps: must be at least 1, got 0"),
    (dict(threads=0), "--threads: must be at least 1, got 0"),
    (dict(save_every=0), "--save-every: must be at least 1, got 0"),
    (dict(nc_share=1.5), "--nc-share: must be between 0 and 1"),
    (dict(warmup_steps=-1), "warmup_steps: must be at least 0"),
    (dict(learning_rate=0.0), "learning_rate: must be positive"),
    (dict(backend="vlm"), "--backend: unknown backend 'vlm' \\(did you mean 'vllm'"),
])
def test_demo_settings_are_checked_before_any_stage_runs(settings, message):
    """--steps 0 was refused only after the base was pretrained (naming the finetuning
    config's max_steps), --threads 0 was torch's RuntimeError traceback."""
    with pytest.raises(DemoError, match=message):
        DemoSettings(**settings)


def test_the_demos_save_every_flag_reaches_its_settings(tmp_path, capsys):
    assert main(["demo", "--save-every", "0", "-o", str(tmp_path / "demo")]) == 2
    assert "--save-every: must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("text", ["1,a", "1,1", "-1", ","])
def test_demo_seeds_flag_names_itself(text, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--seeds", text])
    assert exit_.value.code == 2
    assert "argument --seeds:" in capsys.readouterr().err


@pytest.mark.slow
def test_a_one_seed_demo_says_its_verdicts_are_about_one_trajectory(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(DemoSettings(out=str(out), quick=True, runs=["standard"], seeds=[0], backend="hf"))
    assert "one finetuning seed (0): each verdict is about that one trajectory" in result.summary
    assert "Per seed:" not in result.summary
    verdict = detect_inversion(out / "results" / "standard" / "seed-0", "world_conflict")
    row = next(line for line in result.summary.splitlines() if line.startswith("standard "))
    assert verdict.verdict in row and f"({verdict.peak_checkpoint.step})" in row
    assert "Recipes over seeds" not in (out / "compare" / "compare.html").read_text()


@pytest.mark.slow
def test_vary_base_gives_each_seed_a_base_of_its_own(tmp_path):
    from harness.checkpoints.fingerprints import weights_fingerprint

    out = tmp_path / "demo"
    result = run_demo(DemoSettings(out=str(out), quick=True, runs=["standard"], seeds=[0, 1], vary_base=True,
                                   backend="hf"))
    bases = [out / "bases" / f"seed-{seed}" for seed in (0, 1)]
    assert [json.loads((base / "pretrain.json").read_text())["config"]["seed"] for base in bases] == [0, 1]
    assert weights_fingerprint(bases[0]) != weights_fingerprint(bases[1])
    assert not (out / "base").exists()
    for seed, base in zip((0, 1), bases):
        run = out / "runs" / "standard" / f"seed-{seed}"
        assert (run / "checkpoint-0").resolve() == base.resolve()
        assert json.loads((run / "finetune_config.json").read_text())["model"] == str(base)
    assert "Base model of seed 0:" in result.summary and "Base model of seed 1:" in result.summary
    assert "each seed pretrains a base of its own" in result.summary
    assert "this one pretrained base" not in result.summary
    # The same folder with one shared base: the runs and their results are redone, not refused.
    shared = run_demo(DemoSettings(out=str(out), quick=True, runs=["standard"], seeds=[0, 1], backend="hf"))
    assert (out / "runs" / "standard" / "seed-1" / "checkpoint-0").resolve() == (out / "base").resolve()
    assert "this one pretrained base" in shared.summary


def test_vary_base_is_for_the_world_model_only():
    with pytest.raises(DemoError, match="--vary-base: only the world model"):
        DemoSettings(model="smollm2", vary_base=True)
