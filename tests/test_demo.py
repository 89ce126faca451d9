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

from harness.reports.recipes import detect_inversion
from harness.demo.recipe import RECIPES, RUNS
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
    console = harness("demo", "--quick", "-o", str(out))
    lines = [line for line in console if not PROGRESS.match(line)]
    assert len(lines) < 60, "\n".join(lines)
    assert not any(VLLM_LINE.match(line) for line in console)
    assert any(VLLM_LINE.match(line) for line in (out / "logs" / "engine.log").read_text().splitlines())
    timings = json.loads((out / "timings.json").read_text())
    summary = (out / "summary.txt").read_text()
    assert summary.strip() in "\n".join(console)

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
        row = next(line for line in summary.splitlines() if line.startswith(run.name + " "))
        assert verdict.verdict in row and f"{verdict.drop.value:+.3f}" in row
    qk = json.loads((out / "runs" / "qk_only" / "mitigations.json").read_text())
    assert qk["qk_only"]["trained"]
    # The mitigations went through harness finetune's options, on the standard run's data.
    standard = json.loads((out / "runs" / "standard" / "finetune_config.json").read_text())
    filtered = json.loads((out / "runs" / "cc_filter" / "finetune_config.json").read_text())
    assert filtered["dataset"] == standard["dataset"] and standard["filter_non_context_critical"] is None
    dropped = json.loads((out / "runs" / "cc_filter" / "mitigations.json").read_text())["filter_non_context_critical"]
    assert dropped["dropped"] == dropped["candidates"] // 2
    assert f"the filter dropped {dropped['dropped']} of {dropped['candidates']} examples" in summary
    augmented = json.loads((out / "runs" / "cf_augment" / "mitigations.json").read_text())
    assert augmented["counterfactual_augmentation"]["added"] > 0
    assert f"report: {out / 'compare' / 'compare.html'}" in console
    assert "GPT2LMHeadModel" in summary and "Caveats" in summary
    # The measurement's record, from which docs/readme_numbers.py writes the README's numbers.
    record = json.loads((out / "demo.json").read_text())
    assert record["fresh"] and record["command"] == f"harness demo --quick -o {out}"
    assert record["seconds"] == timings and record["summary"] == summary.strip()
    assert [row[0] for row in record["table"]] == ["run", *(run.name for run in RUNS)]
    assert "cores" in record["cpu"] and record["load_average_before"] is not None

    samples = {p: p.read_text() for p in out.glob("results/*/samples/*/*.jsonl")}
    # Resumed with -v: every stage cached but one run's results, which an engine computes again
    # (the same samples), its own lines on the console this time.
    shutil.rmtree(out / "results" / "qk_only")
    verbose = harness("demo", "--quick", "-o", str(out), "-v")
    assert any(VLLM_LINE.match(line) for line in verbose)
    again = json.loads((out / "timings.json").read_text())
    assert not json.loads((out / "demo.json").read_text())["fresh"]  # resumed: not a whole run's timings
    assert again["instruction tuning"] < timings["instruction tuning"] / 2
    assert {p: p.read_text() for p in out.glob("results/*/samples/*/*.jsonl")} == samples
