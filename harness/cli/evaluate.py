"""``harness evaluate``: its flags come from :class:`~harness.sweep.config.RunConfig`'s fields
(group, help, how each reads), plus the engine options that have flags of their own."""

from __future__ import annotations

import argparse
from typing import Any

from harness.backends.options import ENGINE_OPTIONS
from harness.cli.parsing import Parser, add_setting, command, given_settings, in_typed_flags, quiet_into
from harness.console import say
from harness.errors import ReportError, RunError
from harness.reports.report import write_report
from harness.reports.runs import RunResults
from harness.reports.verdicts import console_table
from harness.results import SAMPLES
from harness.sweep.config import ENGINE, GROUPS, RunConfig, engine_options, settings
from harness.sweep.evaluate import evaluate

#: The exit status of an evaluation that finished but skipped a checkpoint (listed at the end).
SKIPPED_EXIT = 3

#: The engine options that are flags of their own (the rest: --engine-args or --config).
ENGINE_FLAGS = {name: option for name, option in ENGINE_OPTIONS.items() if option.flag}

DESCRIPTION = (
    "Evaluate every checkpoint of a finetuning run (or one model) on the tasks, with one engine for the "
    "whole sweep, and write a results folder: run.json (config, task hashes, versions), samples/ (one line "
    "a scored example), summary.jsonl (each metric with its 95% interval) and report.html. Rerunning the "
    "same command resumes; a checkpoint whose weights changed is refused unless --overwrite names it. At the "
    "end it prints each task's headline metric per condition (first, peak, last, verdict). Exit status: 0 "
    f"when every checkpoint was evaluated; {SKIPPED_EXIT} when some were skipped (unreadable or vanished: "
    "listed at the end; the others' results are written); 2 for a usage error; 130 when interrupted.")

EXAMPLES = """
harness evaluate --limit 10 --format chat -o results/smollm2     # the bundled SmolLM2, 10 per condition
harness evaluate --checkpoints runs/my-sft/ --tasks capitals,proverbs --format alpaca -o results/my-sft
harness evaluate --checkpoints runs/my-sft/ --follow --until-file runs/my-sft/DONE   # while it trains
harness evaluate --config configs/tulu-llama2-lora.yaml --engine-args gpu_memory_utilization=0.8,block_size=32
harness evaluate --checkpoints 'runs/*/checkpoint-*' --workers 4 -o results/sweep   # 4 engines (Ray)
"""


def add(parser: Parser, commands: Any) -> None:
    evaluate_command = command(parser, commands, "evaluate", "evaluate checkpoints on tasks and write a results "
                                                             "folder", DESCRIPTION, EXAMPLES)
    add_arguments(evaluate_command)
    evaluate_command.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every run setting's flag, grouped as :class:`RunConfig` groups them, and the engine's."""
    parser.add_argument("--config", metavar="YAML", help="a run config (configs/*.yaml); flags given here win")
    for group in GROUPS:
        flags = parser.add_argument_group(group)
        for field in settings(group):
            if field.metadata["flag"]:
                add_setting(flags, field.name)
        if group == ENGINE:
            _add_engine_flags(flags)
    parser.add_argument("--no-report", action="store_true", help="do not write report.html and plots/ at the end")
    parser.add_argument("--log_samples", "--log-samples", action="store_true",
                        help=f"accepted (lm-evaluation-harness's flag): samples are always written, to <output>/{SAMPLES}")


def _add_engine_flags(group: Any) -> None:
    group.add_argument("--engine-args", "--model_args", action="append", default=[], metavar="K=V,...",
                       help="engine options as name=value pairs, values read as YAML (repeatable): any of "
                            f"{', '.join(sorted(set(ENGINE_OPTIONS) - set(ENGINE_FLAGS)))}, or a vllm.EngineArgs "
                            "field (passed to vllm.LLM)")
    for name, option in ENGINE_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if option.type is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=option.help)
        else:
            group.add_argument(flag, type=option.type, help=option.help)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's settings: ``--config`` YAML, then the flags given (flags win). A setting's
    error names the flag the user typed."""
    given = given_settings(args)
    try:
        config = RunConfig.from_yaml(args.config, **given) if args.config else RunConfig(**given)
    except RunError as error:
        raise RunError(in_typed_flags(str(error), list(given), args.argv)) from None
    engine = engine_options(args.engine_args, {name: getattr(args, name) for name in ENGINE_FLAGS
                                               if getattr(args, name) is not None})
    return config.with_engine_options(engine) if engine else config


def run(args: argparse.Namespace) -> int:
    config = run_config(args)
    # Followed as it trains, the report is rewritten after each checkpoint: open it any time.
    live = [lambda checkpoint, rows: _report_quietly(config.output)] if config.follow and not args.no_report else []
    if args.log_samples:
        say(f"--log_samples: samples are always written, to {config.output}/{SAMPLES}")
    with quiet_into(config.output, verbose=args.verbose):
        folder = evaluate(config, command_line=["harness", *args.argv], observers=live)
        say(console_table(RunResults(folder.path)))
        say(f"results: {folder.path} (summary: {folder.summary_file})")
        if not args.no_report:
            try:
                say(f"report: {write_report(folder.path)}")
            except ReportError as error:  # the results stand without a report (e.g. every checkpoint skipped)
                say(f"no report: {error}")
    skipped = folder.read_record().skipped_checkpoints
    if skipped:
        say(f"{len(skipped)} checkpoint(s) skipped (exit status {SKIPPED_EXIT}):")
        for label, reason in skipped.items():
            say(f"  {label}: {reason}")
        return SKIPPED_EXIT
    return 0


def _report_quietly(run_dir: str) -> None:
    try:
        write_report(run_dir)
    except ReportError:  # nothing to draw yet
        pass
