"""Command line: parses arguments and calls the library; nothing here that Python users lack."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from harness.analysis import X_AXES
from harness.backends import ENGINE_OPTIONS
from harness.conjugates import CONJUGATES
from harness.errors import HarnessError, ReportError, TaskError
from harness.prompts import FORMATS, apply_format, render
from harness.report import compare, write_report
from harness.run_config import RunConfig
from harness.runner import evaluate
from harness.tasks import FAMILIES, TaskRegistry


def _add_include_path(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include-path", action="append", default=[], metavar="DIR",
                        help="a folder of your own task YAML files (repeatable)")


def cmd_tasks(args: argparse.Namespace) -> int:
    registry = TaskRegistry(args.include_path)
    rows = [("name", "family", "examples", "conditions", "conjugates")]
    for name in registry.names():
        task = registry.tasks[name]
        rows.append((name, task.config.family, str(len(task.examples)),
                     ",".join(task.conditions), ",".join(task.config.conjugates)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    registry = TaskRegistry(args.include_path)
    task = registry.get(args.task)
    examples = task.examples
    if args.conjugate not in task.config.conjugates:
        raise TaskError(f"{task.path or task.name}: conjugates: the task does not list {args.conjugate!r}"
                        f" (it lists: {', '.join(task.config.conjugates)})")
    counts = Counter(e.condition for e in examples)
    print(f"task {task.name} ({task.config.family}), version {task.config.version}, hash {task.content_hash()}")
    print(f"source: {task.path}")
    print(f"{len(examples)} examples: " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())))
    print(f"conjugates: {', '.join(task.config.conjugates)}; scoring: {', '.join(task.config.scoring.modes)}"
          f" ({task.config.scoring.match})")
    # Examples written in a conjugate (a file of translated prompts) render under that one only.
    shown = [e for e in examples if e.conjugate in (None, args.conjugate)]
    example = shown[min(args.index, len(shown) - 1)]
    rendered = render(task, example, args.conjugate)
    print(f"\nexample {example.id!r} ({example.condition}, {args.conjugate}, format {args.format}):")
    print("-" * 60)
    print(apply_format(rendered.prompt, args.format))
    print("-" * 60)
    for role, spellings in rendered.answers.items():
        print(f"{role}: {' | '.join(spellings)}")
    return 0


def _list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


# The engine options that are flags of their own (the rest go through --config).
ENGINE_FLAGS = {name: option for name, option in ENGINE_OPTIONS.items() if option.flag}


def cmd_evaluate(args: argparse.Namespace) -> int:
    settings = {name: getattr(args, name) for name in (
        "output", "tasks", "checkpoints", "model", "base_model", "backend", "format", "conjugates",
        "modes", "limit", "seed", "batch_size", "include_path", "overwrite", "truncate")
        if getattr(args, name) not in (None, [])}
    for flag in ("trust_remote_code", "verify_weights"):
        if getattr(args, flag):
            settings[flag] = True
    engine = {name: getattr(args, name) for name in ENGINE_FLAGS if getattr(args, name) is not None}
    config = RunConfig.from_yaml(args.config, **settings) if args.config else RunConfig(**settings)
    if engine:
        config.backend_options = {**config.backend_options, **engine}
    run = evaluate(config, command_line=["harness", *sys.argv[1:]])
    print(f"results: {run.path} (summary: {run.summary_file})")
    if not args.no_report:
        try:
            print(f"report: {write_report(run.path)}")
        except ReportError as error:  # the results stand without a report (e.g. every checkpoint skipped)
            logging.getLogger("harness").warning("no report: %s", error)
    return 0


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML", help="a run config (configs/*.yaml); flags given here win")
    parser.add_argument("--checkpoints", metavar="SPEC",
                        help="a folder of checkpoint-N folders, a glob, a comma-separated list, "
                             "hub-name@revision,... or PEFT adapter folders (with --base-model)")
    parser.add_argument("--model", help="a single model folder or hub name (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--base-model", help="the base model of PEFT adapter checkpoints")
    parser.add_argument("--tasks", type=_list, help="comma-separated task names or files, or 'all'")
    parser.add_argument("--backend", choices=["auto", "vllm", "hf"], help="inference engine (auto: vLLM if installed)")
    parser.add_argument("--format", choices=FORMATS, help="instruction format of the prompts")
    parser.add_argument("--conjugates", type=_list, help=f"restrict conjugates ({', '.join(CONJUGATES)})")
    parser.add_argument("--modes", type=_list, help="restrict scoring modes (generate, loglikelihood)")
    parser.add_argument("--limit", type=int, help="at most N examples per task condition (quick looks)")
    parser.add_argument("--output", "-o", help="results folder (rerun the same command to resume)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--batch-size", type=int, help="examples per engine call (results are written per batch)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    parser.add_argument("--overwrite", type=_list, metavar="LABEL[,LABEL]",
                        help="discard the earlier samples of these checkpoint labels and evaluate them again "
                             "(a label whose weights, engine or dtype changed is otherwise refused)")
    parser.add_argument("--verify-weights", action="store_true",
                        help="add a full content hash of every weight file to each checkpoint's identity")
    parser.add_argument("--truncate", choices=["left"],
                        help="cut prompts longer than the model's window from the left (default: refuse them "
                             "before the sweep starts); their samples are marked and counted")
    for name, option in ENGINE_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if option.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=option.help)
        else:
            parser.add_argument(flag, type=option.type, help=option.help)
    parser.add_argument("--no-report", action="store_true", help="do not write report.html and plots/ at the end")
    _add_include_path(parser)


def cmd_report(args: argparse.Namespace) -> int:
    print(write_report(args.run_dir))
    return 0


def _labelled_run(text: str) -> tuple[str, str]:
    name, separator, run_dir = text.partition("=")
    if not (separator and name and run_dir):
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_DIR, got {text!r}")
    return name, run_dir


def cmd_compare(args: argparse.Namespace) -> int:
    labels = {Path(run_dir).resolve(): name for name, run_dir in args.label}
    # A labelled folder that is also given as a positional argument is one run, not two.
    runs = {Path(run_dir).resolve(): run_dir for run_dir in [*args.run_dirs, *(run_dir for _, run_dir in args.label)]}
    if not runs:
        raise ReportError("no runs to compare: give RUN_DIR arguments or --label NAME=RUN_DIR")
    names = [labels.get(path, path.name) for path in runs] if labels else None
    print(compare(list(runs.values()), labels=names, x=args.x, output=args.output))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from harness.training.config import FinetuneConfig  # torch and transformers: only when used
    from harness.training.run import run_finetune

    overrides = {name: getattr(args, name) for name in ("model", "dataset", "output_dir", "max_steps", "seed")
                 if getattr(args, name) is not None}
    output_dir = run_finetune(FinetuneConfig.from_yaml(args.config, **overrides))
    print(f"checkpoints: {output_dir} (evaluate them: harness evaluate --checkpoints {output_dir})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from harness.demo import DemoSettings, run_demo

    chosen = {key: getattr(args, key) for key in ("runs", "steps", "nc_share", "cf_share", "seed", "model")
              if getattr(args, key) is not None}
    settings = DemoSettings(out=args.out, quick=args.quick, backend=args.backend, threads=args.threads, **chosen)
    result = run_demo(settings)
    print(result.summary)
    print(f"\nstage timings (s): {', '.join(f'{k} {v}' for k, v in result.seconds.items())}")
    print(f"report: {result.report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.split(":")[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tasks = commands.add_parser("tasks", help="list the registered tasks",
                                description=f"List tasks. Families: {', '.join(FAMILIES)}.")
    _add_include_path(tasks)
    tasks.set_defaults(run=cmd_tasks)

    validate = commands.add_parser("validate", help="check a task or data file and show one rendered prompt")
    validate.add_argument("task", metavar="TASK_OR_FILE",
                          help="a task name, a task YAML file, or a data file (.json/.jsonl/.csv/.parquet)")
    validate.add_argument("--conjugate", default="en", choices=CONJUGATES)
    validate.add_argument("--format", default="plain", choices=[f for f in FORMATS if f != "chat"])
    validate.add_argument("--index", type=int, default=0, help="which example to show")
    _add_include_path(validate)
    validate.set_defaults(run=cmd_validate)

    evaluate = commands.add_parser("evaluate", help="evaluate checkpoints on tasks and write a results folder")
    _add_evaluate_arguments(evaluate)
    evaluate.set_defaults(run=cmd_evaluate)

    demo = commands.add_parser("demo", help="reproduce context-parametric inversion end to end on a CPU, offline",
                               description="Pretrain a tiny GPT-2 on a synthetic world, instruction-tune it four "
                                           "ways (standard and three mitigations) with dense checkpoints, evaluate "
                                           "every checkpoint and chart context reliance. Stages are cached in --out.")
    demo.add_argument("--out", default="results/demo", help="output folder (rerun to resume)")
    demo.add_argument("--quick", action="store_true", help="a few steps of everything: tests the plumbing only")
    demo.add_argument("--runs", type=_list, help="a subset of: standard, cc_filter, cf_augment, qk_only")
    demo.add_argument("--model", choices=["world", "smollm2"],
                      help="world (default): pretrain a tiny GPT-2 on a synthetic world; smollm2: LoRA runs on "
                           "the bundled SmolLM2-135M-Instruct, probed on real capitals")
    demo.add_argument("--steps", type=int, help="instruction-tuning steps per run (default: 250 world, 40 smollm2)")
    demo.add_argument("--nc-share", type=float, help="share of non-context-critical examples (default 0.5)")
    demo.add_argument("--cf-share", type=float, help="share of counterfactual examples added (default 0.1)")
    demo.add_argument("--seed", type=int, help="pretraining and finetuning seed (default 0)")
    demo.add_argument("--backend", default="auto", choices=["auto", "vllm", "hf"])
    demo.add_argument("--threads", type=int, default=2, help="torch threads for training")
    demo.set_defaults(run=cmd_demo)

    report = commands.add_parser("report", help="write plots/*.png and report.html for a results folder")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a results folder (the --output of evaluate)")
    report.set_defaults(run=cmd_report)

    compare_runs = commands.add_parser("compare", help="overlay several runs task by task in compare.html")
    compare_runs.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="results folders")
    compare_runs.add_argument("--label", action="append", type=_labelled_run, default=[], metavar="NAME=RUN_DIR",
                              help="name a run in the charts (repeatable; the folder is added if not listed)")
    compare_runs.add_argument("--x", choices=X_AXES, default="step",
                              help="x axis: training step, epoch or tokens seen (from trainer_state.json)")
    compare_runs.add_argument("--output", "-o", metavar="DIR",
                              help="where compare.html and plots/ go (default: compare/ beside the runs)")
    compare_runs.set_defaults(run=cmd_compare)
    finetune = commands.add_parser("finetune", help="instruction-tune a model (Trainer, LoRA or full) with the "
                                                    "inversion mitigations as options")
    finetune.add_argument("--config", required=True, metavar="YAML",
                          help="a finetuning recipe (configs/finetune-*.yaml); flags given here win")
    finetune.add_argument("--model", help="a local model folder or hub name")
    finetune.add_argument("--dataset", help="a local instruction file (Alpaca records or 'messages')")
    finetune.add_argument("--output-dir", help="where the checkpoint-N folders go (must hold none yet)")
    finetune.add_argument("--max-steps", type=int)
    finetune.add_argument("--seed", type=int)
    finetune.set_defaults(run=cmd_finetune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evaluate`` command (same as ``harness evaluate``)."""
    return main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
