"""The command line as a user meets it: help, version, one vocabulary of flags, suggestions
for typos, engine options in one string, and the per-item commands."""

from __future__ import annotations

import json
import shutil

import pytest
from handmade import context_run
from test_tasks import minimal, write_task

from harness import cli
from harness.cli.evaluate import run_config
from harness.backends.options import check_engine_options, parse_engine_args
from harness.errors import RunError

COMMANDS = ("tasks", "validate", "evaluate", "report", "compare", "flips", "finetune", "demo")


def run_cli(argv, capsys):
    """Exit code and output of ``harness argv``; argparse exits count as their code."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_and_top_level_help(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith("ift-harness ")
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "context-reliance probes" in out
    assert all(command in out for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_examples(command, capsys):
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0
    assert "examples:" in out and f"harness {command}" in out
    assert len(out.split("\n\n")[1]) > 60  # a description paragraph, not one line


def test_evaluate_help_says_the_defaults(capsys):
    _, out, _ = run_cli(["evaluate", "--help"], capsys)
    flat = " ".join(out.split())
    for default in ("default: results/run", "default: capitals,world_facts,proverbs,icl_vs_if", "default: plain",
                    "default: as many as take about 5 s", "default: 1024", "default: auto"):
        assert default in flat, default
    assert "--engine-args" in out and "--model_args" in out
    with pytest.raises(SystemExit):
        cli.evaluate_main(["--help"])  # the `evaluate` command: the same help
    assert capsys.readouterr().out == out


def test_unknown_flags_and_commands_get_a_suggestion(capsys):
    code, _, err = run_cli(["evaluate", "--outptu", "x"], capsys)
    assert code == 2 and "--outptu (did you mean '--output' or '--output_path'?)" in err
    code, _, err = run_cli(["evalute"], capsys)
    assert code == 2 and "did you mean 'evaluate'" in err
    code, _, err = run_cli(["report", "r", "--export-format", "csv"], capsys)
    assert code == 2 and "did you mean '--export'?" in err


def test_every_writing_command_takes_output(capsys):
    parser = cli.build_parser()
    for argv in (["demo", "-o", "D"], ["demo", "--out", "D"], ["finetune", "--config", "c", "-o", "D"],
                 ["finetune", "--config", "c", "--output-dir", "D"], ["evaluate", "-o", "D"], ["report", "r", "-o", "D"],
                 ["compare", "a", "-o", "D"]):
        assert parser.parse_args(argv).output == "D", argv
    assert parser.parse_args(["evaluate", "-v"]).verbose and parser.parse_args(["-v", "tasks"]).verbose
    assert not parser.parse_args(["tasks"]).verbose


def test_limit_takes_a_count_or_a_share():
    parser = cli.build_parser()
    assert parser.parse_args(["evaluate", "--limit", "10"]).limit == 10
    assert parser.parse_args(["evaluate", "--limit", "0.1"]).limit == 0.1
    config = run_config(parser.parse_args(["evaluate", "--limit", "0.25", "-o", "x"]))
    assert config.limit == 0.25


def test_engine_args_are_read_as_yaml_and_checked():
    assert parse_engine_args("dtype=bfloat16,max_model_len=4096,enforce_eager=true") == {
        "dtype": "bfloat16", "max_model_len": 4096, "enforce_eager": True}
    assert parse_engine_args("engine_kwargs={block_size: 32, x: [1, 2]}") == {
        "engine_kwargs": {"block_size": 32, "x": [1, 2]}}
    with pytest.raises(RunError, match="'dtype' is not name=value"):
        parse_engine_args("dtype")
    with pytest.raises(RunError, match="max_model_len: expected int"):
        check_engine_options({"max_model_len": "long"}, where="--engine-args")
    with pytest.raises(RunError, match="--engine-args: max_model_lenn: not an engine option .did you mean 'max_model_len'"):
        check_engine_options({"max_model_lenn": 10}, where="--engine-args")


def test_engine_args_merge_with_flags_and_config(tmp_path):
    pytest.importorskip("vllm")
    config_file = tmp_path / "run.yaml"
    config_file.write_text("backend_options:\n  dtype: float32\n  engine_kwargs:\n    max_num_seqs: 8\n")
    args = cli.build_parser().parse_args(["evaluate", "--config", str(config_file), "--model_args",
                                          "max_num_batched_tokens=4096,gpu_memory_utilization=0.5", "--max-model-len", "512"])
    options = run_config(args).backend_options
    assert options == {"dtype": "float32", "gpu_memory_utilization": 0.5, "max_model_len": 512,
                       "engine_kwargs": {"max_num_seqs": 8, "max_num_batched_tokens": 4096}}


def test_validate_index_out_of_range_is_an_error(capsys):
    code, _, err = run_cli(["validate", "capitals", "--index", "99999"], capsys)
    assert code == 2 and "--index 99999" in err and "(0 to " in err


def test_validate_renders_a_chat_template(tiny_tokenizer_dir, tmp_path, capsys):
    model = tmp_path / "chat-model"
    shutil.copytree(tiny_tokenizer_dir, model)
    settings = json.loads((model / "tokenizer_config.json").read_text())
    settings["chat_template"] = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
    (model / "tokenizer_config.json").write_text(json.dumps(settings))
    code, out, err = run_cli(["validate", "capitals", "--format", "chat", "--model", str(model)], capsys)
    assert code == 0, err
    assert "<|user|>Question: What is the capital of" in out and "<|assistant|>" in out
    code, _, err = run_cli(["validate", "capitals", "--format", "chat", "--model", str(tiny_tokenizer_dir)], capsys)
    assert code == 2 and "no chat template" in err


def test_tasks_lists_the_good_files_and_reports_a_broken_one(tmp_path, capsys):
    write_task(tmp_path, minimal(tmp_path))
    (tmp_path / "broken.yaml").write_text("name: broken\nfamily: [unclosed\n")
    code, out, _ = run_cli(["tasks", "--include-path", str(tmp_path)], capsys)
    assert code == 0 and "\nmine " in out and "\ncapitals " in out
    assert "skipped broken: " in out and "broken.yaml" in out
    code, _, err = run_cli(["validate", "broken", "--include-path", str(tmp_path)], capsys)
    assert code == 2 and "broken.yaml" in err
    code, _, err = run_cli(["validate", "capitls"], capsys)
    assert code == 2 and "did you mean 'capitals'" in err


def test_flips_prints_the_transitions(tmp_path, capsys):
    run = context_run(tmp_path / "run", [20, 120, 40])
    code, out, err = run_cli(["flips", str(run)], capsys)
    assert code == 0, err
    assert "step 20 -> step 30" in out and "lost 80, gained 0" in out and out.count("context -> parametric") == 10
    code, out, _ = run_cli(["flips", str(run), "first", "20", "-n", "3"], capsys)
    assert "lost 0, gained 100" in out and out.count("parametric -> context") == 3
    code, _, err = run_cli(["flips", str(run), "nowhere", "last"], capsys)
    assert code == 2 and "no checkpoint 'nowhere'" in err


def test_report_and_compare_flags(tmp_path, capsys):
    a = context_run(tmp_path / "a", [20, 120, 20])
    context_run(tmp_path / "b", [20, 30, 40], steps=[0, 10, 20])
    code, out, err = run_cli(["report", str(a), "-o", str(tmp_path / "paper"), "--export", "csv,svg",
                              "--ylim", "0,1"], capsys)
    assert code == 0, err
    assert (tmp_path / "paper" / "tables" / "inversion.csv").is_file()
    assert (tmp_path / "paper" / "plots" / "context_reliance.svg").is_file()
    code, _, err = run_cli(["report", str(a), "--ylim", "1,0"], capsys)
    assert code == 2 and "LOW must be below HIGH" in err
    code, out, err = run_cli(["compare", str(tmp_path / "[ab]"), "--x", "tokens", "--tokens-per-step", "100",
                              "-o", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    assert out.strip() == str(tmp_path / "cmp" / "compare.html")
    code, _, err = run_cli(["compare", str(a), "--tokens-per-step", "b=many"], capsys)
    assert code == 2 and "expected N or NAME=N" in err


def test_log_lines_go_to_the_console_of_the_moment(monkeypatch):
    """The harness logger writes to whatever standard error is when a line is logged: a
    stream that was standard error when logging was set up (a notebook cell's, a test's
    captured one) may be closed since, and writing to it printed "--- Logging error ---"
    tracebacks, which W&B then recorded as console output of the run."""
    import io
    import logging

    from harness.console import setup_logging

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    setup_logging(verbose=False)
    logging.getLogger("harness").info("one")
    first.close()
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("harness.checkpoints").info("two")
    assert second.getvalue().splitlines() == ["INFO harness.checkpoints: two"]


@pytest.mark.parametrize("command", ["report", "compare", "demo", "export-lm-eval"])
def test_an_output_that_is_a_file_is_one_clear_error_for_every_writing_command(command, tmp_path, capsys):
    run = context_run(tmp_path / "run", [20, 120, 20])
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    argv = {"report": ["report", str(run)], "compare": ["compare", str(run)], "demo": ["demo", "--quick"],
            "export-lm-eval": ["export-lm-eval", "capitals"]}[command]
    for output in (afile, afile / "below"):
        code, _, err = run_cli([*argv, "-o", str(output)], capsys)
        assert code == 2 and f"{afile} is a file; give a folder" in err, err
        assert "Traceback" not in err


def test_a_misspelt_engine_option_is_suggested_once():
    with pytest.raises(RunError) as error:
        check_engine_options({"enforce_eagr": True}, where="--engine-args")
    assert "(did you mean 'enforce_eager'?)" in str(error.value)


def test_a_misspelt_conjugate_is_refused_before_any_work(tmp_path, capsys):
    code, _, err = run_cli(["evaluate", "--conjugates", "en,enn", "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and "conjugates: unknown conjugate 'enn' (did you mean 'en'?" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, field", [("format: chatt", "format"), ("limit: -1", "limit"),
                                         ("conjugates: [enn]", "conjugates")])
def test_a_bad_value_in_a_config_names_the_file_and_the_field(line, field, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"output: {tmp_path / 'out'}\n{line}\n")
    code, _, err = run_cli(["evaluate", "--config", str(config)], capsys)
    assert code == 2 and f"{config}: {field}: " in err, err
    code, _, err = run_cli(["evaluate", "--config", str(config), f"--{field}", "x"], capsys)
    assert code == 2 and str(config) not in err  # the flag's value is the one refused now, not the file's


def test_flips_with_a_condition_skips_the_tasks_that_lack_it(tmp_path, capsys):
    from handmade import rich_run

    run = rich_run(tmp_path / "run")
    code, out, err = run_cli(["flips", str(run), "first", "last", "--metric", "accuracy", "--condition",
                              "closed_book"], capsys)
    assert code == 0, err
    assert "capitals" in out and "closed_book" in out and "icl_vs_if" not in out
    code, _, err = run_cli(["flips", str(run), "first", "last", "--metric", "accuracy", "--condition", "nowhere"],
                           capsys)
    assert code == 2 and "nowhere" in err


def test_a_run_that_cannot_start_writes_nothing_and_starts_no_engine(tmp_path, capsys, monkeypatch):
    """An unknown task or a missing checkpoint folder is refused before any engine loads a
    model, and leaves no output folder (not even its logs/) behind."""
    import harness.backends

    def no_engine(*args, **kwargs):
        raise AssertionError("an engine was made for a run that cannot start")

    monkeypatch.setattr(harness.backends, "make_backend", no_engine)
    out = tmp_path / "out"
    code, _, err = run_cli(["evaluate", "--tasks", "capitalz", "-o", str(out)], capsys)
    assert code == 2 and "did you mean 'capitals'" in err
    assert not out.exists()
    code, _, err = run_cli(["evaluate", "--checkpoints", str(tmp_path / "nowhere"), "-o", str(out)], capsys)
    assert code == 2 and "does not exist" in err
    assert not out.exists()


def test_a_misspelt_engine_option_is_one_line_on_the_console(tmp_path):
    """Checking an engine option imports vLLM; its import-time notes (e.g. Triton without a
    CPU backend) must not crowd the one error line."""
    pytest.importorskip("vllm")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "harness.cli", "evaluate", "--engine-args", "max_num_seqz=4",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --engine-args: max_num_seqz"), lines


def test_a_finetuning_run_whose_data_is_missing_leaves_no_output_folder(tmp_path, capsys, tiny_gpt2_dir):
    """The same for `harness finetune`: a missing dataset is refused before anything is written."""
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_gpt2_dir}\ndataset: {tmp_path / 'missing.jsonl'}\nmethod: full\nmax_steps: 1\n")
    out = tmp_path / "out"
    code, _, err = run_cli(["finetune", "--config", str(config), "-o", str(out)], capsys)
    assert code == 2 and "missing.jsonl: no such file" in err
    assert not out.exists()


def _console_lines(out: str, err: str) -> list[str]:
    return [line for line in (out + err).splitlines() if line.strip()]


def test_a_hub_model_that_is_not_here_is_one_clear_line_in_finetune(tmp_path, capsys):
    """Offline (the tests' HF_HUB_OFFLINE=1) a hub model not in the cache cannot load: one line
    naming the `model` setting and what to do, before anything is written; not a traceback."""
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "hi"}) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(f"model: nosuchorg/nosuchmodel\ndataset: {data}\nmethod: full\nmax_steps: 1\n")
    out = tmp_path / "out"
    code, stdout, err = run_cli(["finetune", "--config", str(config), "-o", str(out)], capsys)
    assert code == 2
    lines = _console_lines(stdout, err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: model: nosuchorg/nosuchmodel is not on this machine"), lines
    assert "hf download nosuchorg/nosuchmodel" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("model, says", [("nowhere", "folder does not exist"), ("empty", "config.json missing")])
def test_a_model_folder_that_is_missing_or_empty_is_named_in_finetune(tmp_path, capsys, model, says):
    """transformers calls a missing folder an invalid repo id, an empty one a tokenizer it
    cannot instantiate (cut to its first line): the user needs the folder and what is wrong."""
    (tmp_path / "empty").mkdir()
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "hi"}) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tmp_path / model}\ndataset: {data}\nmethod: full\nmax_steps: 1\n")
    code, stdout, err = run_cli(["finetune", "--config", str(config), "-o", str(tmp_path / "out")], capsys)
    lines = _console_lines(stdout, err)
    assert code == 2 and lines == [f"error: model: {tmp_path / model}: {says}"], lines


def test_a_hub_model_that_is_not_here_is_one_clear_line_in_evaluate(tmp_path, capsys):
    """evaluate records the model as skipped and, as nothing else was evaluated, ends with one
    error line saying why; transformers' multi-line message reaches the console nowhere."""
    out = tmp_path / "out"
    code, stdout, err = run_cli(["evaluate", "--model", "nosuchorg/nosuchmodel", "--backend", "hf", "--tasks",
                                 "capitals", "--limit", "2", "--no-report", "-o", str(out)], capsys)
    lines = _console_lines(stdout, err)
    assert code == 2, lines
    assert not any(line.startswith("Check your internet") for line in lines), lines
    assert not any("nothing left to evaluate" in line for line in lines), lines
    assert lines[-1].startswith("error: no checkpoint could be evaluated (nosuchmodel: load failed: "
                                "nosuchorg/nosuchmodel is not on this machine"), lines
    assert json.loads((out / "run.json").read_text())["skipped_checkpoints"]["nosuchmodel"].startswith("load failed")


@pytest.mark.parametrize("argv, start", [
    (["--dtype", "bf17"], "error: --dtype: unknown dtype 'bf17' (did you mean 'bf16'?)"),
    (["--engine-args", "dtype=bf17"], "error: --engine-args: dtype: unknown dtype 'bf17'"),
])
def test_an_unknown_dtype_is_refused_naming_the_flag(tmp_path, capsys, argv, start):
    """A dtype the engines do not run was a ValueError traceback from the engine's constructor,
    after the output folder's logs/ had been made."""
    out = tmp_path / "out"
    code, stdout, err = run_cli(["evaluate", *argv, "-o", str(out)], capsys)
    lines = _console_lines(stdout, err)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(start), lines
    assert not out.exists()


@pytest.mark.parametrize("options, message", [
    ({"max_model_len": 0}, "max_model_len: must be at least 1, got 0"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization: a share of the memory, above 0 and at most 1"),
    ({"block_size": 0}, "block_size: must be at least 1"),
    ({"reload_atol": -0.1}, "reload_atol: must be at least 0"),
])
def test_engine_option_values_out_of_range_are_refused_before_an_engine_starts(options, message):
    """They reached vLLM, whose refusal ('1 validation error for ModelConfig') came after the
    model was found and an engine was being built."""
    with pytest.raises(RunError, match=message):
        check_engine_options(options)


def test_a_misspelt_device_is_refused_but_a_device_this_machine_lacks_is_the_engines_to_refuse():
    with pytest.raises(RunError, match="device: 'gpu' is not a torch device"):
        check_engine_options({"device": "gpu"})
    assert check_engine_options({"device": "cuda:1"}) == {"device": "cuda:1"}  # e.g. for workers on GPU nodes
