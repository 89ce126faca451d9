"""``harness finetune`` and ``harness demo``: training runs, and the whole story end to end."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from harness.cli.parsing import Parser, add_setting, comma_list, command, quiet_into, seed_list
from harness.console import aligned, say

if TYPE_CHECKING:  # the training stack is imported only when a command needs it
    from harness.training.run import SavedCheckpoint


def add(parser: Parser, commands: Any) -> None:
    finetune = command(parser, commands, "finetune", "instruction-tune a model (LoRA or full), mitigations as options",
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
    finetune.add_argument("--save-steps", type=int, metavar="N", help="save a checkpoint every N steps")
    finetune.add_argument("--seed", type=int)
    finetune.add_argument("--seeds", type=seed_list, metavar="S1,S2,...",
                          help="run the recipe once per seed (replicates), each in OUTPUT/seed-N; overrides --seed")
    finetune.set_defaults(run=run_finetune)

    demo = command(parser, commands, "demo", "reproduce context-parametric inversion end to end on a CPU, offline",
                   "Pretrain a tiny GPT-2 on a synthetic world, instruction-tune it with the standard recipe "
                   "and a mitigation (--runs all: three mitigations), each over several finetuning seeds, with "
                   "dense checkpoints; evaluate every checkpoint, chart context reliance and give each recipe's "
                   "verdict over its seeds. Every stage is cached in --output: rerun to resume.",
                   "harness demo\nharness demo --quick -o /tmp/demo\nharness demo --runs all --seeds 0,1,2,3\n"
                   "harness demo --vary-base -o results/demo-bases\n"
                   "harness demo --model smollm2 --runs standard")
    demo.add_argument("--output", "-o", "--out", dest="output", default="results/demo", metavar="DIR",
                      help="output folder (rerun to resume)")
    demo.add_argument("--quick", action="store_true", help="a few steps of everything: tests the plumbing only")
    demo.add_argument("--runs", type=comma_list, metavar="RECIPE,...",
                      help="the recipes: some of standard, cc_filter, cf_augment, qk_only, or all "
                           "(default: standard,cf_augment)")
    demo.add_argument("--seeds", type=seed_list, metavar="S1,S2,...",
                      help="finetuning seeds, each recipe once per seed (default: 0,1,2 world, 0 smollm2; "
                           "one seed gives verdicts about single trajectories)")
    demo.add_argument("--vary-base", action="store_true", default=None,
                      help="each seed also pretrains a base of its own (pretraining seed = that seed), so that the "
                           "verdicts are about bases drawn from the pretraining recipe, not one base (world only; "
                           "one pretraining a seed)")
    demo.add_argument("--model", choices=["world", "smollm2"],
                      help="world (default): pretrain a tiny GPT-2 on a synthetic world; smollm2: LoRA runs on "
                           "the bundled SmolLM2-135M-Instruct, probed on real capitals")
    demo.add_argument("--steps", type=int, help="instruction-tuning steps per run (default: 250 world, 40 smollm2)")
    demo.add_argument("--save-every", type=int, metavar="N",
                      help="checkpoint every N instruction-tuning steps (default: 25 world, 20 smollm2); denser "
                           "saves cost evaluation time, and leave harness evaluate --schedule adaptive more to skip")
    demo.add_argument("--nc-share", type=float, help="share of non-context-critical examples (default: 0.5)")
    demo.add_argument("--cf-share", type=float, help="share of counterfactual examples added (default: 0.1)")
    demo.add_argument("--seed", type=int, help="the seed of the base model and the training data, which every run "
                                               "shares (default: 0)")
    add_setting(demo, "backend")
    demo.add_argument("--threads", type=int, default=2, help="torch threads for training")
    demo.set_defaults(run=run_demo)


def run_finetune(args: argparse.Namespace) -> int:
    from harness.training.config import (
        FinetuneConfig,  # torch and transformers: only when used
    )
    from harness.training.run import run_recipe, saved_checkpoints

    overrides = {name: getattr(args, name) for name in ("model", "dataset", "max_steps", "save_steps", "seed")
                 if getattr(args, name) is not None}
    if args.output is not None:
        overrides["output_dir"] = args.output
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    config = FinetuneConfig.from_yaml(args.config, **overrides)
    with quiet_into(config.output_dir, verbose=args.verbose):
        output_dirs = run_recipe(config)
    for output_dir in output_dirs:
        rows = [["checkpoint", "step", "epoch", "tokens seen", "last logged loss"]]
        rows += [[row.folder, str(row.step), "-" if row.epoch is None else f"{row.epoch:.2f}",
                  "-" if row.tokens_seen is None else f"{row.tokens_seen:,}", _loss(row)]
                 for row in saved_checkpoints(output_dir)]
        say(aligned(rows))
        # The probes are asked in the format the run was trained in, or they ask another model.
        say(f"checkpoints: {output_dir} (evaluate them: harness evaluate --checkpoints {output_dir} "
            f"--format {config.format})")
    return 0


def _loss(row: SavedCheckpoint) -> str:
    """The loss logged last by a checkpoint's step, with that step when it was an earlier one."""
    if row.loss is None:
        return "-"
    return f"{row.loss:.4f}" + (f" (step {row.loss_step})" if row.loss_step != row.step else "")


def run_demo(args: argparse.Namespace) -> int:
    from harness.demo import DemoSettings
    from harness.demo import run_demo as demo

    chosen = {key: getattr(args, key) for key in ("runs", "seeds", "steps", "save_every", "nc_share", "cf_share",
                                                  "seed", "model", "backend", "vary_base")
              if getattr(args, key) is not None}
    settings = DemoSettings(out=args.output, quick=args.quick, threads=args.threads, **chosen)
    with quiet_into(args.output, verbose=args.verbose):
        result = demo(settings, command=" ".join(["harness", *sys.argv[1:]]))
    say(result.summary)
    say("\nstage timings (s): " + ", ".join(f"{stage} {seconds}" for stage, seconds in result.seconds.items()))
    say(f"report: {result.report}")
    return 0
