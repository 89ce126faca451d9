"""``harness demo``: context-parametric inversion end to end on a CPU, offline.

- :mod:`harness.demo.run`: :func:`run_demo`, the stages and the summary;
- :mod:`harness.demo.recipe`: :class:`DemoSettings`, the four runs and each model's recipe;
- :mod:`harness.demo.corpus`: what the tiny GPT-2 is pretrained and instruction-tuned on;
- :mod:`harness.demo.pretrain`: pretraining that base model;
- :mod:`harness.demo.fact_instructions`: real-fact instruction data for SmolLM2.

The demo sits on top of everything else and only calls it.
"""

from harness.demo.recipe import DemoResult, DemoSettings
from harness.demo.run import run_demo

__all__ = ["DemoResult", "DemoSettings", "run_demo"]
