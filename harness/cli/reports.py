"""``harness report``, ``harness compare`` and ``harness flips``: results folders read back."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.parsing import Parser, comma_list, command, ylim
from harness.console import say
from harness.reports.compare import compare
from harness.reports.exports import EXPORTS
from harness.reports.items import flips
from harness.reports.mitigations import MITIGATION_METHOD, mitigation_differences
from harness.reports.recipes import recipe_verdicts
from harness.reports.report import write_report
from harness.reports.runs import X_AXES, RunResults
from harness.results import run_folders


def _labelled_run(text: str) -> tuple[str, str]:
    name, separator, run_dir = text.partition("=")
    if not (separator and name and run_dir):
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_DIR, got {text!r}")
    return name, run_dir


def _recipe(text: str) -> tuple[str, list[str]]:
    name, separator, folders = text.partition("=")
    if not (separator and name and folders):
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_DIR,RUN_DIR,..., got {text!r}")
    return name, comma_list(folders)


def _per_step(text: str) -> tuple[str | None, float]:
    """``--tokens-per-step``: ``N`` for every run, or ``NAME=N`` for one."""
    name, separator, number = text.rpartition("=")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or NAME=N, got {text!r}") from None
    return (name if separator else None), value


def _add_figure_arguments(parser: argparse.ArgumentParser, output_help: str) -> None:
    parser.add_argument("--output", "-o", metavar="DIR", help=output_help)
    parser.add_argument("--export", type=comma_list, default=[], metavar="FORMATS",
                        help=f"also write the tables and figures as: {', '.join(EXPORTS)} (comma-separated)")
    parser.add_argument("--ylim", type=ylim, metavar="LOW,HIGH",
                        help="the y axis of rate charts (default: fitted to the data, 0 included)")


def add(parser: Parser, commands: Any) -> None:
    report = command(parser, commands, "report", "write plots and report.html for a results folder",
                     "Draw a results folder's charts (plots/*.png) and write a self-contained report.html: "
                     "inversion verdicts per task, context reliance over training, conjugate gaps, the items "
                     "that flipped between the peak and the last checkpoint, the run's config and sample "
                     "prompts and outputs. --export adds the tables as CSV and LaTeX and the figures as "
                     "PDF/SVG, for a paper.",
                     "harness report results/my-sft\nharness report results/my-sft -o paper/ --export csv,latex,pdf"
                     "\nharness report results/my-sft --ylim 0,1")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a results folder (the --output of evaluate)")
    _add_figure_arguments(report, "report.html and plots/ (default: RUN_DIR)")
    report.set_defaults(run=run_report)

    compare_runs = command(parser, commands, "compare", "overlay several runs task by task in compare.html",
                           "Overlay runs (model families, sizes, data mixtures, mitigations) task by task on "
                           "one x axis, with each run's inversion verdict and a link to its own report.",
                           "harness compare results/standard results/qk-only --x epoch\n"
                           "harness compare 'results/*' -o results/compare\n"
                           "harness compare --label llama=results/llama --label olmo=results/olmo --x tokens")
    compare_runs.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="results folders, or a glob")
    compare_runs.add_argument("--label", action="append", type=_labelled_run, default=[], metavar="NAME=RUN_DIR",
                              help="name a run in the charts (repeatable; the folder is added if not listed)")
    compare_runs.add_argument("--recipe", action="append", type=_recipe, default=[], metavar="NAME=DIR,DIR,...",
                              help="the results folders of one recipe's seeds (repeatable): prints the recipe's "
                                   "verdict over its seeds and each seed's own, and each recipe's drop and peak "
                                   "minus the first recipe's with a 95%% interval over seeds (paired by seed "
                                   "where they share seeds); the folders are compared too")
    compare_runs.add_argument("--x", choices=X_AXES, default="step",
                              help="x axis: training step; epoch or tokens seen (trainer_state.json; the base "
                                   "checkpoint at 0); params (parameter count, less pruned weights)")
    compare_runs.add_argument("--tokens-per-step", action="append", type=_per_step, default=[],
                              metavar="[NAME=]N",
                              help="with --x tokens: tokens per training step, for runs whose checkpoints have "
                                   "no trainer_state.json (all runs, or NAME's; repeatable)")
    _add_figure_arguments(compare_runs, "compare.html and plots/ (default: compare/ beside the runs)")
    compare_runs.set_defaults(run=run_compare)

    flip_command = command(parser, commands, "flips", "print the items whose answer changed between two checkpoints",
                           "The transition matrix of each item's state (context, parametric, both, neither; or "
                           "correct/wrong) between checkpoints A and B, McNemar's exact test of the change, and a "
                           "few of the items that flipped, with their prompt and both outputs. A and B are "
                           "checkpoint labels, steps, or first/peak/last (peak: where the task's metric is "
                           "highest; picked on the same items, so McNemar's p-value is then descriptive only).",
                           "harness flips results/demo/results/standard/seed-0\n"
                           "harness flips results/demo/results/standard/seed-0 100 250 --task world_conflict\n"
                           "harness flips results/my-sft first last --metric accuracy --condition closed_book")
    flip_command.add_argument("run_dir", metavar="RUN_DIR", help="a results folder")
    flip_command.add_argument("before", nargs="?", default="peak", metavar="A",
                              help="the earlier checkpoint (default: peak)")
    flip_command.add_argument("after", nargs="?", default="last", metavar="B",
                              help="the later checkpoint (default: last)")
    flip_command.add_argument("--task", help="one task (default: every task with a yes/no headline metric)")
    flip_command.add_argument("--metric", help="a yes/no per item metric (default: the task's headline metric)")
    flip_command.add_argument("--condition", help="default: the metric's first condition (conflicting)")
    flip_command.add_argument("--conjugate", help="default: en")
    flip_command.add_argument("-n", type=int, default=10, help="how many flipped items to print")
    flip_command.set_defaults(run=run_flips)


def run_report(args: argparse.Namespace) -> int:
    say(str(write_report(args.run_dir, output=args.output, exports=args.export, ylim=args.ylim)))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    recipes = {}
    for name, folders in args.recipe:
        seeds = run_folders(folders)
        recipes[name] = recipe_verdicts([RunResults(folder) for folder in seeds])
        say(f"recipe {name} ({len(seeds)} seeds):")
        say("\n".join(str(verdict) for verdict in recipes[name]) or "  no task evaluated by every seed")
    differences = mitigation_differences(recipes)
    if differences:
        say(f"against the reference recipe {args.recipe[0][0]} ({MITIGATION_METHOD}):")
        say("\n".join(f"  {difference}" for difference in differences))
    run_dirs = [*args.run_dirs, *(folder for _, folders in args.recipe for folder in folders)]
    say(str(compare(run_dirs, labelled=dict(args.label), x=args.x, output=args.output, ylim=args.ylim,
                    tokens_per_step=dict(args.tokens_per_step), exports=args.export, recipes=recipes)))
    return 0


def run_flips(args: argparse.Namespace) -> int:
    results = flips(args.run_dir, task=args.task, before=args.before, after=args.after, metric=args.metric,
                    condition=args.condition, conjugate=args.conjugate, shown=args.n)
    say("\n\n".join(str(result) for result in results))
    return 0
