"""ift-harness: evaluate every checkpoint of an instruction-finetuning run on context-reliance probes.

The command line only parses arguments and calls the library (everything here is a Python
call too: see the README). Commands that write a folder take ``--output/-o``; engine and
library logs go to ``<output>/logs/engine.log`` unless ``-v`` is given.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from harness.analysis import X_AXES
from harness.backends import ENGINE_OPTIONS
from harness.backends.engine_args import check_engine_options, parse_engine_args
from harness.console import ENGINE_LOG, aligned, quiet, say, setup_logging
from harness.conjugates import CONJUGATES
from harness.errors import HarnessError, ReportError, TaskError
from harness.prompts import FORMATS, apply_format, render
from harness.report import EXPORTS, compare, write_report
from harness.run_config import DEFAULT_BATCH_SIZE, RunConfig
from harness.runner import evaluate
from harness.tasks import FAMILIES, TaskRegistry

_DEFAULTS = RunConfig()
LOGS = "logs"
_VERBOSE = "debug logging, and the engines' and libraries' own output on the console"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and adds "(default: ...)" where there is one to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" not in text and action.option_strings and action.default not in (None, False, [])
                and action.default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors suggest the closest command, choice or flag."""

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            message += _did_you_mean(choice.group(1), options)
        super().error(message)

    def unknown_flags(self, extras: Sequence[str]) -> None:
        """Exit with the unknown arguments named, each with its closest flag."""
        flags = [flag for action in self._actions for flag in action.option_strings]
        hints = [f"{extra}{_did_you_mean(extra.split('=')[0], flags)}" for extra in extras]
        self.error(f"unrecognized arguments: {'; '.join(hints)}")


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _command(commands, name: str, summary: str, description: str, examples: str = "") -> _Parser:
    """A subcommand with its one-line summary, its description and its examples; it takes
    ``-v`` too (after the command, where users type it)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()) if examples else None
    command = commands.add_parser(name, help=summary, description=description, epilog=epilog,
                                  formatter_class=_Formatter)
    command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE)
    return command


def _list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def _limit(text: str) -> int | float:
    """``--limit``: a count (``10``) or a share (``0.1``)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a count (10) or a share (0.1), got {text!r}") from None


def _ylim(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0,1), got {text!r}") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"LOW must be below HIGH, got {text!r}")
    return low, high


def _engine_log(output: str | Path) -> Path:
    return Path(output) / LOGS / ENGINE_LOG


# --------------------------------------------------------------------------- tasks, validate


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
    say(aligned(rows))
    for name, error in sorted(registry.broken.items()):
        say(f"skipped {name}: {error}")
    return 0


def _chat_tokenizer(args: argparse.Namespace):
    """The tokenizer whose chat template ``validate --format chat`` renders with."""
    from harness.backends.tokens import load_tokenizer
    from harness.bundled import bundled_model_dir
    from harness.checkpoints import Checkpoint

    model = args.model or str(bundled_model_dir())
    try:
        return load_tokenizer(Checkpoint("validate", None, model), trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as error:
        raise TaskError(f"--model {model}: cannot load its tokenizer ({str(error).splitlines()[0]})") from None


def cmd_validate(args: argparse.Namespace) -> int:
    registry = TaskRegistry(args.include_path)
    task = registry.get(args.task)
    where = task.path or task.name
    if args.conjugate not in task.config.conjugates:
        raise TaskError(f"{where}: conjugates: the task does not list {args.conjugate!r}"
                        f" (it lists: {', '.join(task.config.conjugates)})")
    counts = Counter(e.condition for e in task.examples)
    say(f"task {task.name} ({task.config.family}), version {task.config.version}, hash {task.content_hash()}")
    say(f"source: {task.path}")
    say(f"{len(task.examples)} examples: " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())))
    say(f"conjugates: {', '.join(task.config.conjugates)}; scoring: {', '.join(task.config.scoring.modes)}"
        f" ({task.config.scoring.match})")
    # Examples written in a conjugate (a file of translated prompts) render under that one only.
    shown = [e for e in task.examples if e.conjugate in (None, args.conjugate)]
    if not 0 <= args.index < len(shown):
        raise TaskError(f"{where}: --index {args.index}: the task has {len(shown)} examples in "
                        f"{args.conjugate} (0 to {len(shown) - 1})")
    example = shown[args.index]
    rendered = render(task, example, args.conjugate)
    tokenizer = _chat_tokenizer(args) if args.format == "chat" else None
    try:
        prompt = apply_format(rendered.prompt, args.format, tokenizer)
    except ValueError as error:
        raise TaskError(f"--format {args.format}: {error}") from None
    say(f"\nexample {example.id!r} ({example.condition}, {args.conjugate}, format {args.format}):")
    say("-" * 60)
    say(prompt)
    say("-" * 60)
    for role, spellings in rendered.answers.items():
        say(f"{role}: {' | '.join(spellings)}")
    return 0


# --------------------------------------------------------------------------- evaluate

# The engine options that are flags of their own (the rest: --engine-args or --config).
ENGINE_FLAGS = {name: option for name, option in ENGINE_OPTIONS.items() if option.flag}
_SETTINGS = ("output", "tasks", "checkpoints", "model", "base_model", "backend", "format", "conjugates", "modes",
             "limit", "seed", "batch_size", "flush_every", "include_path", "overwrite", "truncate", "workers",
             "ray_address", "poll", "until_step", "until_file", "idle_timeout", "log_to")


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's settings: ``--config`` YAML, then the flags given (flags win)."""
    settings = {name: getattr(args, name) for name in _SETTINGS if getattr(args, name) not in (None, [])}
    for flag in ("trust_remote_code", "verify_weights", "follow"):
        if getattr(args, flag):
            settings[flag] = True
    config = RunConfig.from_yaml(args.config, **settings) if args.config else RunConfig(**settings)
    engine: dict[str, Any] = {}
    for text in args.engine_args:
        engine.update(check_engine_options(parse_engine_args(text), where="--engine-args"))
    engine.update({name: getattr(args, name) for name in ENGINE_FLAGS if getattr(args, name) is not None})
    if engine:
        kwargs = {**config.backend_options.get("engine_kwargs", {}), **engine.pop("engine_kwargs", {})}
        config.backend_options = {**config.backend_options, **engine, **({"engine_kwargs": kwargs} if kwargs else {})}
    return config


def cmd_evaluate(args: argparse.Namespace) -> int:
    config = run_config(args)
    # Followed as it trains, the report is rewritten after each checkpoint: open it any time.
    live = [lambda checkpoint, rows: _report_quietly(config.output)] if config.follow and not args.no_report else []
    with quiet(_engine_log(config.output), verbose=args.verbose):
        run = evaluate(config, command_line=["harness", *sys.argv[1:]], observers=live)
        say(f"results: {run.path} (summary: {run.summary_file})")
        if not args.no_report:
            try:
                say(f"report: {write_report(run.path)}")
            except ReportError as error:  # the results stand without a report (e.g. every checkpoint skipped)
                say(f"no report: {error}")
    return 0


def _report_quietly(run_dir: str) -> None:
    try:
        write_report(run_dir)
    except ReportError:  # nothing to draw yet
        pass


EVALUATE_DESCRIPTION = (
    "Evaluate every checkpoint of a finetuning run (or one model) on the tasks, with one engine for the "
    "whole sweep, and write a results folder: run.json (config, task hashes, versions), samples/ (one line "
    "a scored example), summary.jsonl (each metric with its 95% interval) and report.html. Rerunning the "
    "same command resumes; a checkpoint whose weights changed is refused unless --overwrite names it.")

_EVALUATE_EXAMPLES = """
harness evaluate --limit 10 --format chat -o results/smollm2     # the bundled SmolLM2, 10 per condition
harness evaluate --checkpoints runs/my-sft/ --tasks capitals,proverbs --format alpaca -o results/my-sft
harness evaluate --checkpoints runs/my-sft/ --follow --until-file runs/my-sft/DONE   # while it trains
harness evaluate --config configs/tulu-llama2-lora.yaml --engine-args gpu_memory_utilization=0.8,block_size=32
harness evaluate --checkpoints 'runs/*/checkpoint-*' --workers 4 -o results/sweep   # 4 engines (Ray)
"""


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--config", metavar="YAML", help="a run config (configs/*.yaml); flags given here win")
    what.add_argument("--checkpoints", metavar="SPEC",
                      help="a folder of checkpoint-N folders, a glob, a comma-separated list, hub-name@revision,"
                           "... or PEFT adapter folders (with --base-model)")
    what.add_argument("--model", help="a single model folder or hub name (default: the bundled "
                                      "SmolLM2-135M-Instruct)")
    what.add_argument("--base-model", help="the base model of PEFT adapter checkpoints")
    what.add_argument("--tasks", type=_list, metavar="NAMES",
                      help=f"comma-separated task names or files, or 'all' (default: {','.join(_DEFAULTS.tasks)})")
    what.add_argument("--conjugates", type=_list, metavar="NAMES",
                      help=f"restrict conjugates ({', '.join(CONJUGATES)}; default: all each task declares)")
    what.add_argument("--modes", type=_list, metavar="MODES",
                      help="restrict scoring modes: generate, loglikelihood (default: what each task declares)")
    what.add_argument("--limit", type=_limit, metavar="N|SHARE",
                      help="a seeded sample of each task condition: N examples, or a share (0.1); the same "
                           "examples at every checkpoint (default: all)")
    what.add_argument("--seed", type=int, help=f"seed of --limit and of the bootstrap (default: {_DEFAULTS.seed})")
    what.add_argument("--format", choices=FORMATS,
                      help=f"instruction format of the prompts; chat uses the tokenizer's template "
                           f"(default: {_DEFAULTS.format})")
    what.add_argument("--include-path", action="append", default=[], metavar="DIR",
                      help="a folder of your own task YAML files (repeatable)")

    out = parser.add_argument_group("results")
    out.add_argument("--output", "-o", metavar="DIR",
                     help=f"results folder; rerun the same command to resume (default: {_DEFAULTS.output})")
    out.add_argument("--overwrite", type=_list, metavar="LABEL[,LABEL]",
                     help="discard the earlier samples of these checkpoint labels and evaluate them again "
                          "(a label whose weights, engine or dtype changed is otherwise refused)")
    out.add_argument("--verify-weights", action="store_true",
                     help="add a full content hash of every weight file to each checkpoint's identity")
    out.add_argument("--truncate", choices=["left"],
                     help="cut prompts longer than the model's window from the left (default: refuse them before "
                          "the sweep starts); their samples are marked and counted")
    out.add_argument("--no-report", action="store_true", help="do not write report.html and plots/ at the end")
    out.add_argument("--log-to", action="append", default=[], metavar="TRACKER",
                     help="tensorboard=DIR, wandb or wandb=RUN_ID: every summary value at its training step "
                          "(repeatable)")

    engine = parser.add_argument_group("engine")
    engine.add_argument("--backend", choices=["auto", "vllm", "hf"],
                        help=f"inference engine; auto: vLLM if it imports, else transformers "
                             f"(default: {_DEFAULTS.backend})")
    engine.add_argument("--engine-args", "--model_args", action="append", default=[], metavar="K=V,...",
                        help="engine options as name=value pairs, values read as YAML (repeatable): any of "
                             f"{', '.join(sorted(set(ENGINE_OPTIONS) - set(ENGINE_FLAGS)))}, or a vllm.EngineArgs "
                             "field (passed to vllm.LLM)")
    engine.add_argument("--batch-size", type=int,
                        help=f"examples per engine call, results written after each (default: {DEFAULT_BATCH_SIZE}"
                             " for transformers; vLLM gets up to --flush-every at once)")
    engine.add_argument("--flush-every", type=int, metavar="N",
                        help=f"at most N examples per vLLM call, so results reach disk that often "
                             f"(default: {_DEFAULTS.flush_every})")
    for name, option in ENGINE_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if option.type is bool:
            engine.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=option.help)
        else:
            engine.add_argument(flag, type=option.type, help=option.help)
    engine.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")

    spread = parser.add_argument_group("many engines (Ray)")
    spread.add_argument("--workers", type=int, metavar="N",
                        help="spread the checkpoints over N Ray actors, each with its own engine")
    spread.add_argument("--ray-address", metavar="ADDR",
                        help="join this Ray cluster (e.g. head-node:6379) instead of starting a local one")

    follow = parser.add_argument_group("following a training run")
    follow.add_argument("--follow", action="store_true",
                        help="keep evaluating the --checkpoints run folder as a training run saves into it")
    follow.add_argument("--poll", type=float, metavar="SECONDS",
                        help=f"seconds between looks at the folder (default: {_DEFAULTS.poll:g})")
    follow.add_argument("--until-step", type=int, metavar="N", help="stop after step N")
    follow.add_argument("--until-file", metavar="PATH",
                        help="stop once PATH exists and every saved checkpoint is evaluated")
    follow.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                        help="stop after this long without a new checkpoint")


# --------------------------------------------------------------------------- report, compare, flips


def cmd_report(args: argparse.Namespace) -> int:
    say(str(write_report(args.run_dir, output=args.output, exports=args.export, ylim=args.ylim)))
    return 0


def _labelled_run(text: str) -> tuple[str, str]:
    name, separator, run_dir = text.partition("=")
    if not (separator and name and run_dir):
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_DIR, got {text!r}")
    return name, run_dir


def _per_step(text: str) -> tuple[str | None, float]:
    """``--tokens-per-step``: ``N`` for every run, or ``NAME=N`` for one."""
    name, separator, number = text.rpartition("=")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or NAME=N, got {text!r}") from None
    return (name if separator else None), value


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.results import run_folders

    labels = {Path(run_dir).resolve(): name for name, run_dir in args.label}
    # A labelled folder that is also given as a positional argument is one run, not two.
    listed = run_folders(args.run_dirs) if args.run_dirs else []
    runs = {Path(run_dir).resolve(): str(run_dir) for run_dir in [*listed, *(d for _, d in args.label)]}
    if not runs:
        raise ReportError("no runs to compare: give RUN_DIR arguments or --label NAME=RUN_DIR")
    names = [labels.get(path, path.name) for path in runs] if labels else None
    say(str(compare(list(runs.values()), labels=names, x=args.x, output=args.output, ylim=args.ylim,
                    tokens_per_step=dict(args.tokens_per_step), exports=args.export)))
    return 0


def cmd_flips(args: argparse.Namespace) -> int:
    from harness.analysis import RunResults
    from harness.items import transitions

    run = RunResults(args.run_dir)
    tasks = [args.task] if args.task else [t for t in run.tasks if _has_states(args.metric or run.headline(t))]
    if not tasks:
        raise ReportError(f"{args.run_dir}: no task has a yes/no headline metric; pass --task and --metric")
    for index, task in enumerate(tasks):
        result = transitions(run, task, args.before, args.after, metric=args.metric, condition=args.condition,
                             conjugate=args.conjugate, shown=args.n)
        say(("\n" if index else "") + str(result))
    return 0


def _has_states(metric: str | None) -> bool:
    from harness.items import states

    try:
        states(metric or "")
    except ReportError:
        return False
    return True


# --------------------------------------------------------------------------- finetune, demo


def cmd_finetune(args: argparse.Namespace) -> int:
    from harness.training.config import FinetuneConfig  # torch and transformers: only when used
    from harness.training.run import run_finetune, saved_checkpoints

    overrides = {name: getattr(args, name) for name in ("model", "dataset", "max_steps", "seed")
                 if getattr(args, name) is not None}
    if args.output is not None:
        overrides["output_dir"] = args.output
    config = FinetuneConfig.from_yaml(args.config, **overrides)
    with quiet(_engine_log(config.output_dir), verbose=args.verbose):
        output_dir = run_finetune(config)
    rows = [["checkpoint", "step", "epoch", "tokens seen", "loss"]]
    rows += [[row.folder, str(row.step), "-" if row.epoch is None else f"{row.epoch:.2f}",
              "-" if row.tokens_seen is None else f"{row.tokens_seen:,}",
              "-" if row.loss is None else f"{row.loss:.4f}"] for row in saved_checkpoints(output_dir)]
    say(aligned(rows))
    say(f"checkpoints: {output_dir} (evaluate them: harness evaluate --checkpoints {output_dir})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from harness.demo import DemoSettings, run_demo

    chosen = {key: getattr(args, key) for key in ("runs", "steps", "nc_share", "cf_share", "seed", "model")
              if getattr(args, key) is not None}
    settings = DemoSettings(out=args.output, quick=args.quick, backend=args.backend, threads=args.threads, **chosen)
    with quiet(_engine_log(args.output), verbose=args.verbose):
        result = run_demo(settings)
    say(result.summary)
    say("\nstage timings (s): " + ", ".join(f"{stage} {seconds}" for stage, seconds in result.seconds.items()))
    say(f"report: {result.report}")
    return 0


# --------------------------------------------------------------------------- the parser


def _version() -> str:
    try:
        return importlib.metadata.version("ift-harness")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser() -> _Parser:
    parser = _Parser(prog="harness", description=__doc__, formatter_class=_Formatter,
                     epilog="run 'harness COMMAND --help' for a command's options and examples")
    parser.add_argument("--version", action="version", version=f"ift-harness {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    tasks = _command(commands, "tasks", "list the registered tasks",
                     f"List every registered task: family, examples, conditions, conjugates. Families: "
                     f"{', '.join(FAMILIES)}. A task file that does not load is listed as skipped with its "
                     "error (it is an error only when a run selects it).",
                     "harness tasks\nharness tasks --include-path my_tasks/")
    _add_include_path(tasks)
    tasks.set_defaults(run=cmd_tasks)

    validate = _command(commands, "validate", "check a task or data file and show one rendered prompt",
                        "Load a task (a registered name, a task YAML file, or a data file in a known layout), "
                        "check it, and print its hash, its sizes and one example rendered exactly as the "
                        "model will see it, with the answers scoring accepts.",
                        "harness validate capitals --conjugate fr\nharness validate proverbs --format chat\n"
                        "harness validate my_cf_world_facts.json --index 3")
    validate.add_argument("task", metavar="TASK_OR_FILE",
                          help="a task name, a task YAML file, or a data file (.json/.jsonl/.csv/.parquet)")
    validate.add_argument("--conjugate", default="en", choices=CONJUGATES, help="the prompt's conjugate")
    validate.add_argument("--format", default="plain", choices=FORMATS,
                          help="instruction format; chat uses --model's chat template")
    validate.add_argument("--model", help="with --format chat: the model whose tokenizer renders the prompt "
                                          "(default: the bundled SmolLM2-135M-Instruct)")
    validate.add_argument("--trust-remote-code", action="store_true", help="allow tokenizer code from --model")
    validate.add_argument("--index", type=int, default=0, help="which example to show")
    _add_include_path(validate)
    validate.set_defaults(run=cmd_validate)

    evaluate_command = _command(commands, "evaluate", "evaluate checkpoints on tasks and write a results folder",
                                EVALUATE_DESCRIPTION, _EVALUATE_EXAMPLES)
    _add_evaluate_arguments(evaluate_command)
    evaluate_command.set_defaults(run=cmd_evaluate)

    report = _command(commands, "report", "write plots and report.html for a results folder",
                      "Draw a results folder's charts (plots/*.png) and write a self-contained report.html: "
                      "inversion verdicts per task, context reliance over training, conjugate gaps, the items "
                      "that flipped between the peak and the last checkpoint, the run's config and sample "
                      "prompts and outputs. --export adds the tables as CSV and LaTeX and the figures as "
                      "PDF/SVG, for a paper.",
                      "harness report results/my-sft\nharness report results/my-sft -o paper/ --export csv,latex,pdf"
                      "\nharness report results/my-sft --ylim 0,1")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a results folder (the --output of evaluate)")
    _add_figure_arguments(report, "report.html and plots/ (default: RUN_DIR)")
    report.set_defaults(run=cmd_report)

    compare_runs = _command(commands, "compare", "overlay several runs task by task in compare.html",
                            "Overlay runs (model families, sizes, data mixtures, mitigations) task by task on "
                            "one x axis, with each run's inversion verdict and a link to its own report.",
                            "harness compare results/standard results/qk-only --x epoch\n"
                            "harness compare 'results/*' -o results/compare\n"
                            "harness compare --label llama=results/llama --label olmo=results/olmo --x tokens")
    compare_runs.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="results folders, or a glob")
    compare_runs.add_argument("--label", action="append", type=_labelled_run, default=[], metavar="NAME=RUN_DIR",
                              help="name a run in the charts (repeatable; the folder is added if not listed)")
    compare_runs.add_argument("--x", choices=X_AXES, default="step",
                              help="x axis: training step; epoch or tokens seen (trainer_state.json; the base "
                                   "checkpoint at 0); params (parameter count, less pruned weights)")
    compare_runs.add_argument("--tokens-per-step", action="append", type=_per_step, default=[],
                              metavar="[NAME=]N",
                              help="with --x tokens: tokens per training step, for runs whose checkpoints have "
                                   "no trainer_state.json (all runs, or NAME's; repeatable)")
    _add_figure_arguments(compare_runs, "compare.html and plots/ (default: compare/ beside the runs)")
    compare_runs.set_defaults(run=cmd_compare)

    flips = _command(commands, "flips", "print the items whose answer changed between two checkpoints",
                     "The transition matrix of each item's state (context, parametric, both, neither; or "
                     "correct/wrong) between checkpoints A and B, McNemar's exact test of the change, and a "
                     "few of the items that flipped, with their prompt and both outputs. A and B are "
                     "checkpoint labels, steps, or first/peak/last (peak: where the task's metric is highest).",
                     "harness flips results/demo/results/standard\n"
                     "harness flips results/demo/results/standard 100 250 --task world_conflict\n"
                     "harness flips results/my-sft first last --metric accuracy --condition closed_book")
    flips.add_argument("run_dir", metavar="RUN_DIR", help="a results folder")
    flips.add_argument("before", nargs="?", default="peak", metavar="A", help="the earlier checkpoint (default: peak)")
    flips.add_argument("after", nargs="?", default="last", metavar="B", help="the later checkpoint (default: last)")
    flips.add_argument("--task", help="one task (default: every task with a yes/no headline metric)")
    flips.add_argument("--metric", help="a yes/no per item metric (default: the task's headline metric)")
    flips.add_argument("--condition", help="default: the metric's first condition (conflicting)")
    flips.add_argument("--conjugate", help="default: en")
    flips.add_argument("-n", type=int, default=10, help="how many flipped items to print")
    flips.set_defaults(run=cmd_flips)

    finetune = _command(commands, "finetune", "instruction-tune a model (LoRA or full), mitigations as options",
                        "Instruction-tune a model with the transformers Trainer (full or LoRA) and save dense "
                        "checkpoints (checkpoint-N with trainer_state.json, tokens seen recorded), with the "
                        "inversion mitigations as recipe options: context-critical filtering, counterfactual "
                        "augmentation, query/key-only training.",
                        "harness finetune --config configs/finetune-standard.yaml\n"
                        "harness finetune --config configs/finetune-qk-only.yaml -o runs/qk --max-steps 200")
    finetune.add_argument("--config", required=True, metavar="YAML",
                          help="a finetuning recipe (configs/finetune-*.yaml); flags given here win")
    finetune.add_argument("--model", help="a local model folder or hub name")
    finetune.add_argument("--dataset", help="a local instruction file (Alpaca records or 'messages')")
    finetune.add_argument("--output", "-o", "--output-dir", dest="output", metavar="DIR",
                          help="where the checkpoint-N folders go (must hold none yet; default: the recipe's)")
    finetune.add_argument("--max-steps", type=int)
    finetune.add_argument("--seed", type=int)
    finetune.set_defaults(run=cmd_finetune)

    demo = _command(commands, "demo", "reproduce context-parametric inversion end to end on a CPU, offline",
                    "Pretrain a tiny GPT-2 on a synthetic world, instruction-tune it four ways (standard and "
                    "three mitigations) with dense checkpoints, evaluate every checkpoint and chart context "
                    "reliance. Every stage is cached in --output: rerun to resume.",
                    "harness demo\nharness demo --quick -o /tmp/demo\nharness demo --model smollm2 --runs standard")
    demo.add_argument("--output", "-o", "--out", dest="output", default="results/demo", metavar="DIR",
                      help="output folder (rerun to resume)")
    demo.add_argument("--quick", action="store_true", help="a few steps of everything: tests the plumbing only")
    demo.add_argument("--runs", type=_list, help="a subset of: standard, cc_filter, cf_augment, qk_only")
    demo.add_argument("--model", choices=["world", "smollm2"],
                      help="world (default): pretrain a tiny GPT-2 on a synthetic world; smollm2: LoRA runs on "
                           "the bundled SmolLM2-135M-Instruct, probed on real capitals")
    demo.add_argument("--steps", type=int, help="instruction-tuning steps per run (default: 250 world, 40 smollm2)")
    demo.add_argument("--nc-share", type=float, help="share of non-context-critical examples (default: 0.5)")
    demo.add_argument("--cf-share", type=float, help="share of counterfactual examples added (default: 0.1)")
    demo.add_argument("--seed", type=int, help="pretraining and finetuning seed (default: 0)")
    demo.add_argument("--backend", default="auto", choices=["auto", "vllm", "hf"], help="inference engine")
    demo.add_argument("--threads", type=int, default=2, help="torch threads for training")
    demo.set_defaults(run=cmd_demo)
    return parser


def _add_figure_arguments(parser: argparse.ArgumentParser, output_help: str) -> None:
    parser.add_argument("--output", "-o", metavar="DIR", help=output_help)
    parser.add_argument("--export", type=_list, default=[], metavar="FORMATS",
                        help=f"also write the tables and figures as: {', '.join(EXPORTS)} (comma-separated)")
    parser.add_argument("--ylim", type=_ylim, metavar="LOW,HIGH",
                        help="the y axis of rate charts (default: fitted to the data, 0 included)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` command."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].unknown_flags(extras)
    setup_logging(args.verbose)
    try:
        return args.run(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was finished is kept; run the same command again to resume", file=sys.stderr)
        return 130


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evaluate`` command (the same as ``harness evaluate``)."""
    return main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
