"""``harness tasks`` and ``harness validate``: the registry, and one task checked and shown."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.parsing import Parser, add_setting, command
from harness.conjugates import CONJUGATES
from harness.console import aligned, say
from harness.errors import TaskError
from harness.tasks import FAMILIES, TaskRegistry
from harness.tasks.preview import describe, preview
from harness.tasks.prompts import FORMATS


def add(parser: Parser, commands: Any) -> None:
    tasks = command(parser, commands, "tasks", "list the registered tasks",
                    f"List every registered task: family, examples, conditions, conjugates, source (a builder, a "
                    "file, or a hub dataset, listed without downloading it: --tasks NAME=FILE reads a local "
                    "copy). Families: "
                    f"{', '.join(FAMILIES)}. A task file that does not load is listed as skipped with its "
                    "error (it is an error only when a run selects it).",
                    "harness tasks\nharness tasks --include-path my_tasks/")
    add_setting(tasks, "include_path")
    tasks.set_defaults(run=run_tasks)

    validate = command(parser, commands, "validate", "check a task or data file and show one rendered prompt",
                       "Load a task (a registered name, a task YAML file, or a data file in a known layout), "
                       "check it, and print its hash, its sizes and one example rendered exactly as the "
                       "model will see it, with the answers scoring accepts.",
                       "harness validate capitals --conjugate fr\nharness validate proverbs --format chat\n"
                       "harness validate my_cf_world_facts.json --index 3")
    validate.add_argument("task", metavar="TASK_OR_FILE",
                          help="a task name, a task YAML file, a data file (.json/.jsonl/.csv/.parquet), or "
                               "NAME=FILE (a hub task read from a local copy)")
    validate.add_argument("--conjugate", choices=CONJUGATES,
                          help="the prompt's conjugate (default: the first the task lists)")
    validate.add_argument("--format", default="plain", choices=FORMATS,
                          help="instruction format; chat uses --model's chat template")
    validate.add_argument("--model", help="with --format chat: the model whose tokenizer renders the prompt "
                                          "(default: the bundled SmolLM2-135M-Instruct)")
    validate.add_argument("--trust-remote-code", action="store_true", help="allow tokenizer code from --model")
    validate.add_argument("--index", type=int, default=0, help="which example to show")
    add_setting(validate, "include_path")
    validate.set_defaults(run=run_validate)

    export = command(parser, commands, "export-lm-eval", "write a task as an lm-eval task (YAML + data)",
                     "Write TASK, rendered in one conjugate and instruction format, as an lm-evaluation-harness "
                     "task: <name>.yaml and <name>.jsonl in --output, run with lm_eval --include_path DIR --tasks "
                     "NAME. loglikelihood: multiple_choice over the two answers (acc is the harness's "
                     "ll_context_win_rate / ll_accuracy); generate: generate_until. Read lm-eval's --log_samples "
                     "file back with harness.results.lm_eval.read_samples.",
                     "harness export-lm-eval capitals -o lm_eval_tasks/\n"
                     "harness export-lm-eval nq_swap=nq_swap_dev.parquet --mode generate -o lm_eval_tasks/")
    export.add_argument("task", metavar="TASK", help="a task name, NAME=FILE, a task YAML file or a data file")
    export.add_argument("-o", "--output", required=True, help="the folder to write into")
    export.add_argument("--conjugate", default="en", choices=CONJUGATES, help="the prompts' conjugate (default: en)")
    export.add_argument("--mode", default="loglikelihood", choices=["loglikelihood", "generate"],
                        help="how lm-eval scores it (default: loglikelihood)")
    export.add_argument("--format", default="plain", choices=["plain", "alpaca", "tulu"],
                        help="instruction format baked into the prompts (chat: lm-eval's --apply_chat_template)")
    add_setting(export, "include_path")
    export.set_defaults(run=run_export)


def run_tasks(args: argparse.Namespace) -> int:
    registry = TaskRegistry(args.include_path)
    rows = [("name", "family", "examples", "conditions", "conjugates", "source")]
    for name in registry.names():
        task = registry.tasks[name]
        rows.append((name, task.config.family, _size(task), ",".join(task.conditions),
                     ",".join(task.config.conjugates), task.source))
    say(aligned(rows))
    for name, error in sorted(registry.broken.items()):
        say(f"skipped {name}: {error}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from harness.results.lm_eval import export_task

    task = TaskRegistry(args.include_path).select([args.task])[0]
    path = export_task(task, args.output, conjugate=args.conjugate, mode=args.mode, fmt=args.format)
    say(f"wrote {path} and its data; run: lm_eval --include_path {path.parent} --tasks {path.stem} ...")
    return 0


def _size(task: Any) -> str:
    """The number of examples; for a hub dataset, never downloaded to list it, the number of
    records its publishers state (each record may give several examples), else "hub"."""
    hf = task.config.source.hf
    if hf is None:
        return str(len(task.examples))
    return f"{hf.rows} records" if hf.rows is not None else "hub"


def _chat_tokenizer(args: argparse.Namespace) -> Any:
    """The tokenizer whose chat template ``validate --format chat`` renders with."""
    from harness.backends.tokens import load_tokenizer
    from harness.checkpoints import Checkpoint
    from harness.checkpoints.bundled import bundled_model_dir

    model = args.model or str(bundled_model_dir())
    try:
        return load_tokenizer(Checkpoint("validate", None, model), trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as error:
        raise TaskError(f"--model {model}: cannot load its tokenizer ({str(error).splitlines()[0]})") from None


def run_validate(args: argparse.Namespace) -> int:
    task = TaskRegistry(args.include_path).select([args.task])[0]
    say(describe(task))
    tokenizer = _chat_tokenizer(args) if args.format == "chat" else None
    say("\n" + str(preview(task, conjugate=args.conjugate, index=args.index, fmt=args.format, tokenizer=tokenizer)))
    return 0
