"""Reports, inversion detection and comparisons, on results folders written by hand.

Each run is built the way the runner writes one: per-example sample lines whose scores give
rates we choose, and summary rows computed from them with :func:`harness.scoring.aggregate`
(grouped as :func:`harness.runner.summarize` groups them), so summary and samples agree.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path

import pytest

from harness import cli
from harness.analysis import detect_inversion, load_results
from harness.errors import ReportError
from harness.report import COMPARE_HTML, PLOTS, REPORT_HTML, compare, write_report
from harness.results import RunDirectory, SampleRecord, SummaryRow
from harness.scoring import GENERATE, LOGLIKELIHOOD, aggregate, metric_names

N = 200
RESAMPLES = 200  # summary CIs only; fewer resamples keep the tests fast


def conflict(n_context: int, n: int = N, *, ll_wins: int | None = None) -> list[dict]:
    """Scores of ``n`` conflicting-context examples, the first ``n_context`` answered from context;
    with ``ll_wins``, log-likelihood scores too, the context answer likelier in the first ``ll_wins``."""
    scores = [{"hit_context": i < n_context, "hit_parametric": i >= n_context,
               "outcome": "context" if i < n_context else "parametric"} for i in range(n)]
    if ll_wins is not None:
        for i, score in enumerate(scores):
            margin = 1.0 if i < ll_wins else -1.0
            score.update(ll_margin=margin, ll_margin_per_token=margin, ll_context_wins=margin > 0,
                         ll_context_wins_per_token=margin > 0)
    return scores


def correct(n_correct: int, n: int = N) -> list[dict]:
    return [{"correct": i < n_correct} for i in range(n)]


def icl(n_icl: int, n: int = N) -> list[dict]:
    return [{"hit_icl": i < n_icl, "hit_instruction": i >= n_icl} for i in range(n)]


ROLES = {"hit_context": ("context", "parametric"), "correct": ("target",), "hit_icl": ("icl", "instruction")}


def write_run(path: Path, checkpoints: list[tuple[str, int | None, dict]], *, hashes: dict[str, str] | None = None,
              progress: dict[str, dict] | None = None) -> Path:
    """A results folder: ``checkpoints`` are (label, step, {(task, condition, conjugate): scores}).

    ``progress`` maps a label to the trainer_state.json written into that checkpoint's folder.
    """
    run = RunDirectory(path)
    rows, entries, tasks = [], [], {}
    for label, step, scored in checkpoints:
        folder = path.parent / f"{path.name}-models" / label
        folder.mkdir(parents=True, exist_ok=True)
        if progress and label in progress:
            (folder / "trainer_state.json").write_text(json.dumps(progress[label]))
        entries.append({"label": label, "step": step, "model": str(folder), "revision": None, "adapter": None})
        by_task = defaultdict(list)
        for (task, condition, conjugate), scores in scored.items():
            tasks[task] = (hashes or {}).get(task, "hash-" + task)
            roles = next(roles for key, roles in ROLES.items() if key in scores[0])
            by_task[task] += [{"id": f"ex{i}", "condition": condition, "conjugate": conjugate, "prompt": "p",
                               "answers": {role: ["a"] for role in roles}, "output": "o", "scores": s}
                              for i, s in enumerate(scores)]
            modes = [GENERATE] + [LOGLIKELIHOOD] * any(key.startswith("ll_") for key in scores[0])
            for mode in modes:
                for metric in metric_names(mode, roles):
                    value = aggregate(metric, scores, n_resamples=RESAMPLES)
                    rows.append({"checkpoint": label, "step": step, "task": task, "task_version": 1,
                                 "task_hash": tasks[task], "condition": condition, "conjugate": conjugate,
                                 "mode": mode, "metric": metric, "value": value.value, "ci_low": value.ci_low,
                                 "ci_high": value.ci_high, "n": value.n})
        for task, samples in by_task.items():
            run.append_samples(label, task, [SampleRecord.from_dict(sample) for sample in samples])
    run.write_summary([SummaryRow.from_dict(row) for row in rows])
    run.write_run({"config": {"model": "tiny"}, "task_hashes": tasks, "checkpoints": entries,
                   "skipped_checkpoints": {}})
    return path


def context_run(path: Path, context_counts: list[int], steps: list[int | None] | None = None, **options) -> Path:
    """One task, ``capitals``, with these numbers of context answers at successive checkpoints."""
    steps = steps or [10 * (i + 1) for i in range(len(context_counts))]
    return write_run(path, [(f"checkpoint-{step}" if step is not None else f"model-{i}", step,
                             {("capitals", "conflicting", "en"): conflict(count)})
                            for i, (step, count) in enumerate(zip(steps, context_counts))], **options)


def assert_self_contained(text: str) -> None:
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert all(ref.startswith(("data:", "#")) for ref in references), references
    # Base64 image data may contain any four letters; everything else must not name a web address.
    assert "http" not in re.sub(r"data:[^\"']*", "", text)
    assert "url(" not in text and "@import" not in text


# --------------------------------------------------------------------------- inversion


def test_inversion_found_with_peak_and_drop(tmp_path):
    run = context_run(tmp_path / "run", [20, 120, 20])  # 0.1 -> 0.6 (step 20) -> 0.1
    found = detect_inversion(run, "capitals")
    assert found.found
    assert found.peak_step == 20
    assert found.n == N
    assert found.first == pytest.approx(0.1) and found.peak == pytest.approx(0.6) and found.last == pytest.approx(0.1)
    assert found.drop.value == pytest.approx(0.5)
    assert found.drop.significant and 0 < found.drop.lower <= 0.5
    assert 0.5 - found.drop.lower < 0.2
    assert found.rise.value == pytest.approx(0.5) and found.rise.significant and found.rise.lower > 0
    assert found.drop.p_value < 0.05 and found.method.startswith("one-sided max-t tests")
    assert found.peak_ci[0] < 0.6 < found.peak_ci[1]
    assert "inversion" in str(found) and "step 20" in str(found)


@pytest.mark.parametrize(("counts", "peak_step", "why"), [
    ([60, 60, 60], 10, "first checkpoint is the highest"),
    ([20, 80, 120], 30, "no fall"),
    ([60, 62, 60], 20, "the rise is within the noise"),  # 2 of 200 examples: not significant
    ([20, 120, 118], 20, "the fall is within the noise"),
])
def test_no_inversion(tmp_path, counts, peak_step, why):
    found = detect_inversion(context_run(tmp_path / "run", counts), "capitals")
    assert not found.found
    assert found.peak_step == peak_step
    assert why in found.reason
    assert "no inversion" in str(found)


def test_examples_are_paired_by_id_across_checkpoints(tmp_path):
    # The last checkpoint lists its lines in another order: pairing must go by id, not by position.
    run = context_run(tmp_path / "run", [20, 120, 20])
    samples = RunDirectory(run).samples_file("checkpoint-30", "capitals")
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(reversed(lines)))
    found = detect_inversion(run, "capitals")
    assert 0.5 - found.drop.lower < 0.2  # unpaired, it would be wide


def test_inversion_in_loglikelihood_mode(tmp_path):
    run = write_run(tmp_path / "run", [(f"checkpoint-{step}", step, {
        ("capitals", "conflicting", "en"): conflict(100, ll_wins=wins)}) for step, wins in ((10, 40), (20, 160), (30, 60))])
    found = detect_inversion(run, "capitals", metric="ll_context_win_rate", mode=LOGLIKELIHOOD)
    assert found.found and found.peak_step == 20 and found.drop.value == pytest.approx(0.5)
    assert not detect_inversion(run, "capitals").found  # generation: flat at 0.5


def test_detect_inversion_errors(tmp_path):
    run = context_run(tmp_path / "run", [20, 120, 20])
    with pytest.raises(ReportError, match="no accuracy results"):
        detect_inversion(run, "capitals", metric="accuracy")
    with pytest.raises(ReportError, match="no context_hit_rate results .loglikelihood."):
        detect_inversion(run, "capitals", mode=LOGLIKELIHOOD)
    with pytest.raises(ReportError, match="ratio of counts"):
        detect_inversion(run, "capitals", metric="memorization_ratio")
    with pytest.raises(ReportError, match="not a results folder"):
        detect_inversion(tmp_path / "nothing", "capitals")


# --------------------------------------------------------------------------- report


def rich_run(path: Path, steps=(10, 20, 30)) -> Path:
    """Knowledge conflict with controls and a conjugate, an ICL probe, and a fact-recall task."""
    checkpoints = []
    for i, step in enumerate(steps):
        rise_fall = [20, 120, 40][i % 3]
        checkpoints.append((f"checkpoint-{step}" if step is not None else "model", step, {
            ("capitals", "conflicting", "en"): conflict(rise_fall, ll_wins=rise_fall + 20),
            ("capitals", "conflicting", "fr"): conflict(rise_fall // 2),
            ("capitals", "closed_book", "en"): correct(150),
            ("capitals", "agreeing", "en"): correct(180 - 10 * i),
            ("icl_vs_if", "repeat_arithmetic", "en"): icl(100 - 30 * i),
            ("icl_vs_if", "capitalize_fill_blank", "en"): icl(60 - 10 * i),
            ("closed_book", "closed_book", "en"): correct(100 + 10 * i),
        }))
    return write_run(path, checkpoints)


def test_write_report(tmp_path):
    run = rich_run(tmp_path / "run")
    path = write_report(run)
    assert path == run / REPORT_HTML
    for name in ("context_reliance", "context_reliance_by_task", "conjugate_gap", "icl_vs_instruction"):
        assert (run / PLOTS / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = path.read_text(encoding="utf-8")
    assert_self_contained(text)
    assert text.count("<img") == 4
    assert 'class="found">inversion' in text  # capitals context reliance: 0.1 -> 0.6 -> 0.2
    assert "log-likelihood: context wins (conflicting)" in text
    for heading in ("capitals", "icl_vs_if", "closed_book", "Conjugate prompts", "instruction following"):
        assert heading in text


def test_report_of_one_checkpoint_without_step(tmp_path):
    run = rich_run(tmp_path / "run", steps=(None,))
    text = write_report(run).read_text(encoding="utf-8")
    assert_self_contained(text)
    assert "one checkpoint: nothing to compare" in text
    assert (run / PLOTS / "context_reliance.png").is_file()


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ReportError, match="not a results folder"):
        write_report(tmp_path)
    (tmp_path / "summary.jsonl").write_text("")
    with pytest.raises(ReportError, match="empty"):
        write_report(tmp_path)


# --------------------------------------------------------------------------- compare and load


def test_compare_flags_mixed_task_versions(tmp_path, caplog):
    a = context_run(tmp_path / "a", [20, 120, 20])
    b = context_run(tmp_path / "b", [20, 40, 60], hashes={"capitals": "other-hash"})
    with caplog.at_level(logging.WARNING, logger="harness"):
        path = compare([a, b], labels=["base", "mitigated"], output=tmp_path / "out")
    assert path == tmp_path / "out" / COMPARE_HTML
    assert (tmp_path / "out" / PLOTS / "capitals.png").is_file()
    text = path.read_text(encoding="utf-8")
    assert_self_contained(text)
    assert 'class="warning"' in text and "task versions differ" in text
    assert "other-hash" in text and "hash-capitals" in text
    assert any("different task versions" in record.getMessage() for record in caplog.records)
    assert 'class="found">inversion' in text and 'class="none">no inversion' in text


def test_compare_same_versions_not_flagged(tmp_path):
    a = context_run(tmp_path / "a", [20, 120, 20])
    b = context_run(tmp_path / "b", [20, 40, 60])
    text = compare([a, b]).read_text(encoding="utf-8")
    assert 'class="warning"' not in text
    assert (tmp_path / "compare" / COMPARE_HTML).is_file()  # default output: beside the runs


def test_compare_by_epoch_reads_trainer_state(tmp_path):
    epochs = {"checkpoint-10": 0.25, "checkpoint-20": 0.5, "checkpoint-30": 0.75}
    progress = {label: {"global_step": int(label.split("-")[1]), "epoch": epoch, "num_input_tokens_seen": 1000}
                for label, epoch in epochs.items()}
    a = context_run(tmp_path / "a", [20, 120, 20], progress=progress)
    frame = load_results(a)
    assert dict(zip(frame["checkpoint"], frame["epoch"])) == epochs
    assert set(frame["tokens"]) == {1000.0}
    text = compare([a], x="epoch", output=tmp_path / "out").read_text(encoding="utf-8")
    assert "x axis: epoch" in text
    assert "at step 20 (epoch 0.5)" in text
    b = context_run(tmp_path / "b", [20, 120, 20])  # no trainer_state.json
    assert load_results(b)["epoch"].isna().all()
    with pytest.raises(ReportError, match="trainer_state.json"):
        compare([a, b], x="epoch", output=tmp_path / "out")


def test_load_keeps_its_columns(tmp_path):
    frame = load_results(context_run(tmp_path / "run", [20, 120, 20]))
    assert {"run", "checkpoint", "step", "task", "task_hash", "condition", "conjugate", "mode", "metric", "value",
            "ci_low", "ci_high", "n", "epoch", "tokens"} <= set(frame.columns)
    assert set(frame["run"]) == {"run"}


# --------------------------------------------------------------------------- command line


def test_cli_report_and_compare(tmp_path, capsys):
    a = context_run(tmp_path / "a", [20, 120, 20])
    b = context_run(tmp_path / "b", [20, 40, 60])
    assert cli.main(["report", str(a)]) == 0
    assert capsys.readouterr().out.strip() == str(a / REPORT_HTML)
    out = tmp_path / "out"
    assert cli.main(["compare", str(a), "--label", f"mitigated={b}", "--x", "step", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / COMPARE_HTML)
    assert "mitigated" in (out / COMPARE_HTML).read_text(encoding="utf-8")


@pytest.mark.parametrize("command", [["report"], ["compare"]])
def test_cli_error_is_one_line(tmp_path, capsys, command):
    assert cli.main([*command, str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "not a results folder" in error and "\n" not in error


def test_evaluate_writes_the_report_unless_told_not_to(tmp_path, monkeypatch, capsys):
    run = context_run(tmp_path / "run", [20, 120, 20])
    monkeypatch.setattr(cli, "evaluate", lambda config, **_: RunDirectory(config.output))
    assert cli.main(["evaluate", "--output", str(run), "--no-report"]) == 0
    assert not (run / REPORT_HTML).exists()
    assert cli.main(["evaluate", "--output", str(run)]) == 0
    assert f"report: {run / REPORT_HTML}" in capsys.readouterr().out
    assert (run / REPORT_HTML).is_file()
