"""What the adaptive checkpoint schedule saves on simulated runs, and whether it keeps the verdict.

For each simulated run (harness.testing.simulated_curve: per-example 0/1 context hits whose
rate rises, peaks and falls, neighbouring checkpoints agreeing on most examples) it runs
``--schedule adaptive``'s rule (harness.sweep.schedule) to its end and compares with the full
sweep: the share of checkpoints evaluated, and whether the inversion tests' verdicts (rise,
fall) and the peak's checkpoint are the full sweep's. No engine: the values are simulated.

    python bench/schedule.py                      # 100 checkpoints, 200 examples, seeds 0-19
    python bench/schedule.py --shape plateau      # rises, then flat to the end
    python bench/schedule.py --checkpoints 44 --examples 300
"""

from __future__ import annotations

import argparse
import statistics

from harness.sweep.schedule import AdaptiveSchedule, run_schedule
from harness.testing import simulated_curve, verdict_and_peak

SHAPES = {
    "inversion": dict(start=0.4, peak=0.9, end=0.6, peak_at=0.3),
    "plateau": dict(start=0.4, peak=0.9, end=0.9, peak_at=0.3),
    "flat": dict(start=0.6, peak=0.6, end=0.6, peak_at=0.5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="inversion")
    parser.add_argument("--checkpoints", type=int, default=100)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()

    shares, same_verdict, same_peak = [], 0, 0
    for seed in range(args.seeds):
        run = simulated_curve(args.checkpoints, args.examples, seed=seed, **SHAPES[args.shape])
        schedule = AdaptiveSchedule(len(run))
        done: list[int] = []
        run_schedule(schedule, done.extend, lambda: [{i: run[i] for i in done}])
        tried = sorted(schedule.tried)
        (verdict, peak), (full_verdict, full_peak) = (verdict_and_peak(run, tried),
                                                      verdict_and_peak(run, list(range(len(run)))))
        shares.append(len(tried) / len(run))
        same_verdict += verdict == full_verdict
        same_peak += peak == full_peak
    print(f"{args.shape}, {args.checkpoints} checkpoints, {args.examples} examples, {args.seeds} runs: "
          f"evaluated {statistics.mean(shares):.0%} of the checkpoints on average "
          f"(min {min(shares):.0%}, max {max(shares):.0%}); verdict as the full sweep's in "
          f"{same_verdict} of {args.seeds}, peak checkpoint in {same_peak} of {args.seeds}")


if __name__ == "__main__":
    main()
