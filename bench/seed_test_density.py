"""What the number of checkpoints tested does to a recipe's verdict over its seeds.

The test over seeds (harness.stats.replicate_max_test) draws the seeds' deviations
independently at each checkpoint, so its bar rises with every checkpoint it looks at. This
script runs it on one recipe's seed folders (finished full sweeps on the same checkpoints)
at every checkpoint, then as if the runs had been saved only every K-th checkpoint (the first,
every K-th after it, and the last), and prints the rise's and the fall's p-values, beside
each seed's own (over all checkpoints). Nothing is evaluated.

    python bench/seed_test_density.py results/demo-dense/results/qk_only/seed-* --every 1,5,25
"""

from __future__ import annotations

import argparse

from harness.conjugates import ENGLISH
from harness.reports.inversion import checkpoint_matrix, inversion_of
from harness.reports.runs import RunResults
from harness.scoring import GENERATE
from harness.stats import format_p, replicate_max_test
from harness.sweep.schedule import CONDITION, METRIC, saved_every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", metavar="FOLDER", help="one recipe's seeds' results folders")
    parser.add_argument("--every", default="1,5,25", metavar="K,...", help="saving intervals to test at")
    parser.add_argument("--task", help="default: the task with context reliance on conflicts")
    args = parser.parse_args()
    intervals = [int(k) for k in args.every.split(",")]
    if len(args.folders) < 2 or min(intervals) < 1:
        parser.error("give two or more seed folders, and intervals of at least 1")
    runs = [RunResults(folder) for folder in args.folders]
    task = args.task or runs[0].task_measuring(METRIC, CONDITION)
    series = [checkpoint_matrix(run, task, METRIC, CONDITION, ENGLISH, GENERATE) for run in runs]
    # The seeds' matrices are compared row by row: the same checkpoints, in the same order.
    if len({tuple(point.label for point in points) for points, _ in series}) != 1:
        parser.error("the seeds' folders hold different checkpoints")
    per_seed = [inversion_of(run, task, METRIC, CONDITION, ENGLISH, GENERATE) for run in runs]
    print("each seed over all its checkpoints: " + "; ".join(
        f"{run.name} {one.verdict} (rise {format_p(one.rise.p_value)}, fall {format_p(one.drop.p_value)})"
        for run, one in zip(runs, per_seed)))
    total = len(series[0][0])
    for every in intervals:
        kept = saved_every(total, every)
        matrices = [matrix[kept] for _, matrix in series]
        rise, fall = (replicate_max_test(matrices, reference) for reference in (0, len(kept) - 1))
        print(f"every {every}: {len(kept)} checkpoints, over {len(runs)} seeds: rise {format_p(rise.p_value)}, "
              f"fall {format_p(fall.p_value)}")


if __name__ == "__main__":
    main()
