"""Reports, inversion detection and comparisons, on results folders written by hand
(:mod:`handmade`)."""

from __future__ import annotations

import logging

import pytest
from handmade import N, assert_self_contained, conflict, context_run, rich_run, write_run

from harness import cli
from harness.reports.runs import load_results
from harness.reports.recipes import detect_inversion
from harness.errors import ReportError
from harness.reports.compare import COMPARE_HTML, compare
from harness.reports.figures import PLOTS
from harness.reports.report import REPORT_HTML, write_report
from harness.results import RunDirectory
from harness.scoring import LOGLIKELIHOOD

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
    assert found.drop.p_value < 0.05 and found.method.startswith("one-sided sign-flip max-t tests")
    assert found.peak_ci[0] < 0.6 < found.peak_ci[1]
    assert "inversion" in str(found) and "step 20" in str(found)


@pytest.mark.parametrize(("counts", "peak_step", "why", "verdict"), [
    ([60, 60, 60], 10, "first checkpoint is the highest", "no significant change"),
    ([20, 80, 120], 30, "no fall", "rise"),
    ([60, 62, 60], 20, "only 2 examples differ", "no verdict"),  # 2 of 200: no test can tell
    ([20, 120, 118], 20, "the fall is within the noise", "rise"),
    ([120, 60, 20], 10, "falls by 0.500", "fall"),
])
def test_no_inversion(tmp_path, counts, peak_step, why, verdict):
    found = detect_inversion(context_run(tmp_path / "run", counts), "capitals")
    assert not found.found
    assert found.peak_step == peak_step
    assert why in found.reason
    assert found.verdict == verdict
    assert f": {verdict}: " in str(found)


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
    assert "one checkpoint: no change to test" in text and "p=nan" not in text
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
    assert 'class="found">inversion' in text and 'class="none">rise' in text


def test_compare_same_versions_not_flagged(tmp_path):
    a = context_run(tmp_path / "a", [20, 120, 20])
    b = context_run(tmp_path / "b", [20, 40, 60])
    text = compare([a, b]).read_text(encoding="utf-8")
    assert 'class="warning"' not in text
    assert (tmp_path / "compare" / COMPARE_HTML).is_file()  # default output: beside the runs


def test_compare_by_epoch_reads_the_recorded_trainer_state(tmp_path):
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


def test_evaluate_writes_the_report_unless_told_not_to(tmp_path, monkeypatch, capfd):
    run = context_run(tmp_path / "run", [20, 120, 20])
    monkeypatch.setattr("harness.cli.evaluate.evaluate", lambda config, **_: RunDirectory(config.output))
    assert cli.main(["evaluate", "--output", str(run), "--no-report"]) == 0
    assert not (run / REPORT_HTML).exists()
    assert cli.main(["evaluate", "--output", str(run)]) == 0
    assert f"report: {run / REPORT_HTML}" in capfd.readouterr().out
    assert (run / REPORT_HTML).is_file()


# --------------------------------------------------------------------------- words, axes, exports


def test_verdict_words_follow_the_metric(tmp_path):
    from handmade import correct

    # Closed-book accuracy falls 0.75 -> 0.25 from the start: forgetting, not inversion, and never good news.
    run = write_run(tmp_path / "run", [(f"checkpoint-{s}", s, {("recall", "closed_book", "en"): correct(c),
                                                                ("capitals", "conflicting", "en"): conflict(k)})
                                       for s, c, k in ((10, 150, 120), (20, 100, 60), (30, 50, 20))])
    assert detect_inversion(run, "recall", metric="accuracy", condition="closed_book").verdict == "fall (forgetting)"
    assert detect_inversion(run, "capitals").verdict == "fall"
    text = write_report(run).read_text(encoding="utf-8")
    assert 'class="found">fall (forgetting)' in text and 'class="found">fall<' in text
    assert "no inversion" not in text and "#33691e" not in text  # no green verdicts
    assert "Verdicts on accuracy" in text or "Verdicts on context_hit_rate, accuracy" in text


def test_report_shows_transitions_samples_and_settings(tmp_path):
    run = context_run(tmp_path / "run", [20, 120, 40])
    text = write_report(run).read_text(encoding="utf-8")
    assert "Items that changed between the peak and the last checkpoint" in text
    assert "80 of the 200 items lost their context_hit_rate between step 20 and step 30" in text
    assert "McNemar" in text and text.count("context → parametric") == 10
    assert "Prompts and outputs" in text and "as the model saw it" in text
    assert "<h2>Settings</h2>" in text and "<code>tiny</code>" in text


def test_report_exports_tables_and_figures(tmp_path):
    import csv

    run = context_run(tmp_path / "run", [20, 120, 20])
    out = tmp_path / "paper"
    path = write_report(run, out, exports=["csv", "latex", "pdf", "svg"])
    assert path == out / REPORT_HTML and not (run / REPORT_HTML).exists()
    rows = list(csv.DictReader((out / "tables" / "inversion.csv").open()))
    assert [(r["task"], r["metric"], r["verdict"]) for r in rows] == [("capitals", "context_hit_rate", "inversion")]
    assert float(rows[0]["peak"]) == pytest.approx(0.6) and rows[0]["peak_at"] == "step 20"
    assert float(rows[0]["drop_lower_bound"]) > 0 and rows[0]["test"].startswith("one-sided sign-flip max-t")
    latex = (out / "tables" / "inversion.tex").read_text()
    assert "\\begin{tabular}" in latex and "context\\_hit\\_rate" in latex and "inversion \\\\" in latex
    for name in ("context_reliance", "context_reliance_by_task"):
        assert (out / PLOTS / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert (out / PLOTS / f"{name}.svg").read_text().lstrip().startswith("<?xml")
        assert "matplotlib.org" not in (out / PLOTS / f"{name}.svg").read_text()
    with pytest.raises(ReportError, match="unknown format 'docx'"):
        write_report(run, exports=["docx"])


def test_rate_axes_fit_the_data_unless_fixed():
    from matplotlib.figure import Figure

    from harness.reports.plots import Line, Panel, _fit_y

    def fitted(panel):
        ax = Figure().subplots()
        for line in panel.lines:
            ax.plot(line.x, line.y)
            ax.fill_between(line.x, line.low, line.high)
        _fit_y(ax, panel)
        return ax.get_ylim()

    small = Line("a", [0, 1, 2], [0.02, 0.14, 0.05], [0.0, 0.1, 0.01], [0.05, 0.18, 0.09])
    low, high = fitted(Panel("t", [small], "context reliance", ymax=1.0))
    assert low == 0.0 and 0.18 <= high < 0.25  # a 0-0.14 effect is not flattened on 0-1
    assert fitted(Panel("t", [small], "x", ylim=(0.0, 1.0), ymax=1.0)) == (0.0, 1.0)
    full = Line("b", [0, 1], [0.5, 1.0], [0.4, 0.98], [0.6, 1.0])
    assert fitted(Panel("t", [full], "x", ymax=1.0))[1] <= 1.02
    below = Line("c", [0, 1], [-0.1, 0.05], [-0.2, 0.0], [0.0, 0.1])
    assert fitted(Panel("t", [below], "gap"))[0] < -0.2


def test_compare_colours_follow_names_and_links_reports(tmp_path):
    a = context_run(tmp_path / "a", [20, 120, 20])
    b = context_run(tmp_path / "b", [20, 40, 60])
    write_report(a)
    one = compare([a, b], labels=["alpha", "beta"], output=tmp_path / "one")
    compare([b, a], labels=["beta", "alpha"], output=tmp_path / "two")
    assert (tmp_path / "one" / PLOTS / "capitals.png").read_bytes() == (tmp_path / "two" / PLOTS /
                                                                        "capitals.png").read_bytes()
    text = one.read_text(encoding="utf-8")
    assert '<a href="../a/report.html">report</a>' in text
    assert '<a href="../b">folder (no report.html yet' in text
    assert "context reliance" in text


def test_compare_on_tokens_puts_the_base_at_zero(tmp_path):
    progress = {f"checkpoint-{s}": {"global_step": s, "epoch": s / 40, "num_input_tokens_seen": 100 * s}
                for s in (10, 20, 30)}
    a = context_run(tmp_path / "a", [20, 30, 120, 20], steps=[0, 10, 20, 30], progress=progress)
    from harness.reports.runs import RunResults

    xs, notes = RunResults(a).x_values("epoch")
    assert xs == {"checkpoint-0": 0.0, "checkpoint-10": 0.25, "checkpoint-20": 0.5, "checkpoint-30": 0.75}
    assert not notes
    b = context_run(tmp_path / "b", [20, 120, 20], steps=[0, 25, 50])  # no trainer states at all
    with pytest.raises(ReportError, match="--tokens-per-step"):
        compare([a, b], x="tokens", output=tmp_path / "out")
    text = compare([a, b], x="tokens", output=tmp_path / "out", tokens_per_step={"b": 64.0}).read_text()
    assert "at step 25 (tokens 1600)" in text
    with pytest.raises(ReportError, match="no run is called c"):
        compare([a, b], x="tokens", output=tmp_path / "out", tokens_per_step={"c": 1.0})


def test_load_results_on_a_folder_without_results_is_a_harness_error(tmp_path):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="no summary"):
        load_results(tmp_path / "nonexistent")


def test_tokens_per_step_given_to_a_run_without_steps_says_the_steps_are_missing(tmp_path):
    from harness.reports.compare import compare

    run = context_run(tmp_path / "look", [20], steps=[None])
    with pytest.raises(ReportError, match=r"--tokens-per-step needs steps, and its checkpoints have none"):
        compare([run], x="tokens", output=tmp_path / "out", tokens_per_step={"look": 100.0})
