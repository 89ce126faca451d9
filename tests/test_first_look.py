"""A newcomer's first hour: the results on the console after ``harness evaluate``, one clear
line for each mistake, a documented exit status when a checkpoint is skipped, lm-evaluation-
harness's flags, and what a run of one checkpoint can show."""

from __future__ import annotations

import logging
import re
import shutil

import pytest

import harness
from harness.cli import build_parser, main
from harness.cli.evaluate import SKIPPED_EXIT, run_config
from harness.reports.compare import runs_to_compare
from harness.reports.report import write_report
from harness.reports.runs import RunResults
from harness.reports.verdicts import NO_CHANGE_TO_TEST, console_table

FAST = ["--backend", "hf", "--tasks", "capitals", "--conjugates", "en", "--limit", "3", "--no-report"]


def parsed(argv: list[str]):
    args = build_parser().parse_args(["evaluate", *argv])
    args.argv = argv
    return args


def test_an_existing_file_as_output_is_one_line(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    for argv in (["-o", str(target)], ["--output_path", str(target / "run")]):
        assert main(["evaluate", *argv]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {argv[0]}: {target} is a file; give a folder to write the results into\n"
    assert target.read_text() == "mine"


def test_a_bad_value_names_the_flag_typed(capsys):
    for limit in ("-1", "0", "1.5"):
        assert main(["evaluate", "--limit", limit]) == 2
        assert capsys.readouterr().err == ("error: --limit: a number of examples (at least 1) or a share of them "
                                           f"(between 0 and 1, e.g. 0.1), got {limit}\n")
    assert main(["evaluate", "--batch_size=0"]) == 2
    assert capsys.readouterr().err == "error: --batch_size: must be at least 1\n"


def test_lm_eval_flags_are_understood():
    config = run_config(parsed(["--output_path", "out", "--batch_size", "8", "--device", "cuda", "--model_args",
                                "max_model_len=128"]))
    assert (config.output, config.batch_size) == ("out", 8)
    assert config.backend_options == {"device": "cuda", "max_model_len": 128}
    assert run_config(parsed(["--batch_size", "auto"])).batch_size is None  # lm-eval's auto: the default
    assert parsed(["--log_samples"]).log_samples


def test_the_public_api_is_listed():
    assert {"evaluate", "RunConfig", "load_results", "detect_inversion", "compare"} <= set(harness.__all__)
    assert set(harness.__all__) <= set(dir(harness))


def test_the_same_run_twice_is_compared_once(tmp_path, caplog):
    run = tmp_path / "A"
    run.mkdir()
    with caplog.at_level(logging.WARNING, logger="harness"):
        folders, _ = runs_to_compare([run, run], {})
    assert folders == [str(run)]
    assert f"{run} is given twice" in caplog.text


@pytest.mark.slow
def test_evaluate_prints_the_results_and_a_skipped_checkpoint_exits_3(llama_run, tmp_path, capfd):
    run = tmp_path / "run"
    shutil.copytree(llama_run, run)
    (run / "checkpoint-20" / "model.safetensors").write_bytes(b"not a safetensors file")
    status = main(["evaluate", "--checkpoints", str(run), "-o", str(tmp_path / "out"), *FAST])
    out = capfd.readouterr().out  # the console's own descriptor: quiet() sends the rest to engine.log
    assert status == SKIPPED_EXIT
    table = out.split("results: ")[0]
    assert "first" in table and "peak [95% CI] (at)" in table and "verdict" in table
    assert "capitals  conflicting  context_hit_rate" in table
    assert out.rstrip().splitlines()[-2:] == ["1 checkpoint(s) skipped (exit status 3):",
                                              out.rstrip().splitlines()[-1]]
    assert out.rstrip().splitlines()[-1].startswith("  checkpoint-20: ")
    assert "Exit status" in build_parser().commands["evaluate"].format_help()


@pytest.mark.slow
def test_one_checkpoint_shows_its_values_and_no_test(tiny_llama_dir, tmp_path):
    output = tmp_path / "one"
    assert main(["evaluate", "--model", str(tiny_llama_dir), "-o", str(output), *FAST]) == 0
    table = console_table(RunResults(output))
    assert "value [95% CI]" in table and NO_CHANGE_TO_TEST in table and "peak" not in table
    # The embedded images are base64, which may spell "nan" by chance: only the text counts.
    page = re.sub(r"data:[^\"']*", "", write_report(output).read_text())
    assert "nan" not in page and NO_CHANGE_TO_TEST in page


def test_the_console_table_says_which_prompt_its_rows_are_and_where_the_others_are(tmp_path):
    """With --conjugates en,fr the table showed the English rows alone, unlabelled: a reader
    could take them for values pooled over both languages."""
    from handmade import conflict, write_run

    both = write_run(tmp_path / "two", [(f"checkpoint-{step}", step, {
        ("capitals", "conflicting", "en"): conflict(count), ("capitals", "conflicting", "fr"): conflict(200 - count)})
        for step, count in ((10, 20), (20, 120))])
    lines = console_table(RunResults(both)).splitlines()
    assert lines[0].split()[:4] == ["task", "condition", "prompt", "metric"]
    assert lines[1].split()[:4] == ["capitals", "conflicting", "en", "context_hit_rate"]
    assert lines[-1] == "(each task's base prompt; the other prompts (fr) are in summary.jsonl and report.html)"
    english = write_run(tmp_path / "one", [(f"checkpoint-{step}", step, {("capitals", "conflicting", "en"):
                                                                          conflict(count)})
                                           for step, count in ((10, 20), (20, 120))])
    assert "prompt" not in console_table(RunResults(english))
