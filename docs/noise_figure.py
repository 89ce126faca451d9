"""Regenerate the README's noise-floor picture from a hand-made results folder: no model needed.

    python docs/noise_figure.py

Writes a run of one knowledge-conflict task (``capitals``, 200 examples) over 8 checkpoints
with tests/handmade.py, as the runner lays results out, and copies its report's per-task
figure to ``docs/images/noise-floor.png``. The counts are binomial draws (seed 0) around a
rise-then-fall of the true context-reliance rate, and the log-likelihood wins around the same
rate plus 0.1; the scores are made up, the drawing is the report's own. No browser exists on
the machine this was made on, so the picture is the figure, not a screenshot of the page.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from handmade import N, conflict, correct, write_run  # noqa: E402  (the tests' results folders)

from harness.reports.figures import PLOTS  # noqa: E402
from harness.reports.report import write_report  # noqa: E402

TARGET = HERE / "images" / "noise-floor.png"
STEPS = [100 * (i + 1) for i in range(8)]
# The true rate: up from 0.15 to 0.55 by the fourth checkpoint, back to 0.25 by the last.
RATES = np.interp(STEPS, [100, 400, 800], [0.15, 0.55, 0.25])


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        run = write_run(Path(folder) / "conflict-run", [
            (f"checkpoint-{step}", step, {
                ("capitals", "conflicting", "en"): conflict(int(rng.binomial(N, rate)),
                                                            ll_wins=int(rng.binomial(N, min(rate + 0.1, 1)))),
                ("capitals", "closed_book", "en"): correct(int(rng.binomial(N, 0.8))),
            }) for step, rate in zip(STEPS, RATES)])
        write_report(run)
        shutil.copy(run / PLOTS / "context_reliance_by_task.png", TARGET)
    print(TARGET)


if __name__ == "__main__":
    main()
