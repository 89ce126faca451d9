"""`harness demo --quick` end to end: every stage's outputs, a summary that agrees with the
results files, and a rerun that skips what is finished."""

from __future__ import annotations

import json

import pytest

from harness.analysis import detect_inversion
from harness.demo import DemoSettings, run_demo
from harness.demo.recipe import RECIPES, RUNS
from harness.results import RunDirectory


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(DemoSettings(out=str(out), quick=True))

    assert json.loads((out / "base" / "pretrain.json").read_text())["finished"]
    assert len(list((out / "data").glob("train-*.jsonl"))) == 1
    assert len(list((out / "data").glob("counterfactual-*.jsonl"))) == 1
    for run in RUNS:
        folder = out / "runs" / run.name
        assert sorted(p.name for p in folder.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-10", "checkpoint-20"]
        assert (folder / "mitigations.json").is_file()
        results = RunDirectory(out / "results" / run.name)
        rows = results.read_summary()
        assert {r.task for r in rows} == set(RECIPES["world"].probes)
        assert {r.step for r in rows} == {0, 10, 20}
        assert (results.path / "report.html").is_file()
        # The summary's numbers are the results files' numbers.
        verdict = detect_inversion(results.path, "world_conflict")
        context = {r.step: r.value for r in rows if r.task == "world_conflict"
                   and r.metric == "context_hit_rate" and r.mode == "generate"}
        assert verdict.first == pytest.approx(context[0])
        assert verdict.last == pytest.approx(context[20])
        assert verdict.peak == pytest.approx(max(context.values()))
        assert str(verdict) in result.summary
    qk = json.loads((out / "runs" / "qk_only" / "mitigations.json").read_text())
    assert qk["qk_only"]["trained"]
    # The mitigations went through harness finetune's options, on the standard run's data.
    standard = json.loads((out / "runs" / "standard" / "finetune_config.json").read_text())
    filtered = json.loads((out / "runs" / "cc_filter" / "finetune_config.json").read_text())
    assert filtered["dataset"] == standard["dataset"] and standard["filter_non_context_critical"] is None
    dropped = json.loads((out / "runs" / "cc_filter" / "mitigations.json").read_text())["filter_non_context_critical"]
    assert dropped["dropped"] == dropped["candidates"] // 2
    assert f"the filter dropped {dropped['dropped']} of {dropped['candidates']} examples" in result.summary
    augmented = json.loads((out / "runs" / "cf_augment" / "mitigations.json").read_text())
    assert augmented["counterfactual_augmentation"]["added"] > 0
    assert result.report == out / "compare" / "compare.html" and result.report.is_file()
    assert (out / "summary.txt").read_text().strip() == result.summary.strip()
    assert "GPT2LMHeadModel" in result.summary and "Caveats" in result.summary

    samples = {p: p.read_text() for p in out.glob("results/*/samples/*/*.jsonl")}
    again = run_demo(DemoSettings(out=str(out), quick=True))
    assert again.seconds["instruction tuning"] < result.seconds["instruction tuning"] / 2
    assert {p: p.read_text() for p in out.glob("results/*/samples/*/*.jsonl")} == samples
