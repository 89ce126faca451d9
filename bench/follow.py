"""How long the demo's finetuning run waits for evaluation: in the training process, and with a
follower process beside it.

The run is the demo's *standard* instruction tuning of its pretrained tiny GPT-2 (the base and
the data are the demo's, made or reused in ``--demo``), with its in-training evaluation at every
save (the world's conflict probe, 50 examples, greedy generation), done three ways:

* ``hf, in training``: the transformers engine on the live model inside ``on_save`` (the demo's
  own setting);
* ``vllm, in training``: one vLLM engine inside ``on_save`` (``follow: false``; what the callback
  did with vLLM before followers);
* ``vllm, followed``: ``harness evaluate --follow`` in its own process (``follow: true``).

Printed for each: the training wall time, the seconds the training loop spent in the callback
(``waited_s``: during training; ``waited_at_end_s``: waiting for the follower to finish), from
``evaluation_wait.json``, and whether the loss curve equals the first way's.

    python bench/follow.py --demo results/demo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("results/demo"),
                        help="the demo's folder: its base model and data are reused (made when missing)")
    parser.add_argument("--ways", default="hf,vllm,followed", help="comma-separated: hf, vllm, followed")
    parser.add_argument("--workdir", type=Path, help="the runs go here (default: a temporary folder)")
    options = parser.parse_args()

    from harness.demo.recipe import DemoSettings
    from harness.demo.run import RUNS, finetune_config
    from harness.training.run import EVALUATION_WAIT_JSON, run_finetune

    settings = DemoSettings(out=str(options.demo))
    recipe = settings.recipe
    base = recipe.make_base(settings, options.demo)
    data = recipe.write_data(settings, options.demo)
    standard = next(run for run in RUNS if run.name == "standard")
    folder = options.workdir or Path(tempfile.mkdtemp(prefix="bench-follow-"))
    ways = {"hf": ("hf, in training", {"backend": "hf", "follow": False}),
            "vllm": ("vllm, in training", {"backend": "vllm", "follow": False}),
            "followed": ("vllm, followed", {"backend": "vllm", "follow": True})}
    losses = {}
    for key in options.ways.split(","):
        label, change = ways[key]
        output = folder / key
        shutil.rmtree(output, ignore_errors=True)
        config = finetune_config(settings, standard, base.path, data, output)
        config = dataclasses.replace(config, evaluation=dataclasses.replace(config.evaluation, **change))
        run_finetune(config)
        wait = json.loads((output / EVALUATION_WAIT_JSON).read_text())
        state = json.loads((output / f"checkpoint-{config.max_steps}" / "trainer_state.json").read_text())
        losses[key] = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
        same = losses[key] == next(iter(losses.values()))
        print(f"{label}: training {wait['training_s']:.1f} s, waited {wait['waited_s']:.1f} s during training "
              f"+ {wait['waited_at_end_s']:.1f} s at the end; loss curve "
              f"{'equal to the first way' if same else 'DIFFERS'}", flush=True)


if __name__ == "__main__":
    main()
