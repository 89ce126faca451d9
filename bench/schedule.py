"""What the adaptive checkpoint schedule saves, and whether it keeps the verdict.

On simulated runs (the default; harness.testing.simulated_curve: per-example 0/1 context hits
whose rate rises, peaks and falls, neighbouring checkpoints agreeing on most examples) it runs
``--schedule adaptive``'s rule (harness.sweep.schedule) to its end and compares with the full
sweep: the share of checkpoints evaluated, and whether the inversion tests' verdicts (rise,
fall) and the peak's checkpoint are the full sweep's. With ``--results`` it replays the rule on
finished full sweeps instead (harness.sweep.schedule.replay: their samples are read, nothing is
evaluated). No engine either way.

    python bench/schedule.py                      # 100 checkpoints, 200 examples, seeds 0-19
    python bench/schedule.py --shape plateau      # rises, then flat to the end
    python bench/schedule.py --checkpoints 44 --examples 300
    python bench/schedule.py --results results/demo/results/*/seed-*
    python bench/schedule.py --results runs/*/results --every 5   # as if saved 5 times less often
"""

from __future__ import annotations

import argparse
import statistics

from harness.errors import HarnessError
from harness.sweep.schedule import AdaptiveSchedule, flat_caveat, replay, run_schedule, verdict_and_peak
from harness.testing import simulated_curve

SHAPES = {
    "inversion": dict(start=0.4, peak=0.9, end=0.6, peak_at=0.3),
    "plateau": dict(start=0.4, peak=0.9, end=0.9, peak_at=0.3),
    "flat": dict(start=0.6, peak=0.6, end=0.6, peak_at=0.5),
}


def simulated(args: argparse.Namespace) -> None:
    shares, same_verdict, same_peak, warned = [], 0, 0, 0
    for seed in range(args.seeds):
        run = simulated_curve(args.checkpoints, args.examples, seed=seed, **SHAPES[args.shape])
        schedule = AdaptiveSchedule(len(run))
        done: list[int] = []
        run_schedule(schedule, done.extend, lambda: [{i: run[i] for i in done}])
        tried = sorted(schedule.tried)
        (verdict, peak), (full_verdict, full_peak) = (verdict_and_peak(run, tried),
                                                      verdict_and_peak(run, list(range(len(run)))))
        warned += flat_caveat(schedule, ["simulated"]) is not None
        shares.append(len(tried) / len(run))
        same_verdict += verdict == full_verdict
        same_peak += peak == full_peak
    print(f"{args.shape}, {args.checkpoints} checkpoints, {args.examples} examples, {args.seeds} runs: "
          f"evaluated {statistics.mean(shares):.0%} of the checkpoints on average "
          f"(min {min(shares):.0%}, max {max(shares):.0%}); verdict as the full sweep's in "
          f"{same_verdict} of {args.seeds}, peak checkpoint in {same_peak} of {args.seeds}; warned that the "
          f"curve looked flat between evaluated checkpoints in {warned} of {args.seeds}")


def replayed(folders: list[str], every: int) -> None:
    evaluated = total = 0
    for folder in folders:
        try:
            result = replay(folder, every=every)
        except HarnessError as error:  # one folder that cannot be replayed does not stop the others
            print(f"skipped: {error}")
            continue
        evaluated, total = evaluated + len(result.evaluated), total + len(result.labels)
        agreement = "; ".join(f"{one.task}: verdict {'as' if verdict else 'NOT as'} the full sweep's, peak "
                              f"{'as' if peak else 'NOT as'} the full sweep's"
                              for one, verdict, peak in zip(result.series, result.same_verdict, result.same_peak))
        print(f"{folder}: would evaluate {len(result.evaluated)} of {len(result.labels)} "
              f"({', '.join(result.labels[i] for i in result.evaluated)}); {agreement}")
        if result.caveat:
            print(f"  would warn: {result.caveat}")
    if total:
        print(f"in all: {evaluated} of {total} checkpoints ({evaluated / total:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="inversion")
    parser.add_argument("--checkpoints", type=int, default=100)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--results", nargs="+", metavar="FOLDER",
                        help="replay the rule on these finished full sweeps instead of simulated runs")
    parser.add_argument("--every", type=int, default=1, metavar="K",
                        help="with --results: replay as if each run had saved only every K-th checkpoint (and the last)")
    args = parser.parse_args()
    if args.every < 1:
        parser.error(f"--every: must be at least 1, got {args.every}")
    if args.results:
        replayed(args.results, args.every)
    else:
        simulated(args)


if __name__ == "__main__":
    main()
