"""Engine start on vLLM's CPU build: eager against compiled (cold and warm compile cache), and the
harness's automatic choice, each a whole ``harness evaluate`` process.

Jobs:

* ``tiny``: 8 tiny float32 checkpoints (the test suite's untied Llama) on ``capitals`` and the
  CF stand-in, English only, ``--limit 20``;
* ``smollm2``: the bundled SmolLM2-135M-Instruct's first look, ``--format chat --limit 10``
  (the README's command).

Each job runs with ``--engine-args enforce_eager=true``, then ``enforce_eager=false`` with an
empty compile cache (cold), again with the cache that run left (warm), and finally with no
``enforce_eager`` (the harness decides; its choice and reason are read from run.json), after
one untimed eager warm-up run (the first run of a fresh install also compiles Python's
bytecode). Each run's summary is compared with the eager run's.

    python bench/engine_start.py                  # both jobs
    python bench/engine_start.py --jobs smollm2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.results import RunDirectory

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _job(name: str, folder: Path) -> list[str]:
    if name == "tiny":
        from harness.testing import build_checkpoint_run, build_tiny_tokenizer

        tokenizer, run = folder / "tokenizer", folder / "run"
        if not run.exists():
            build_tiny_tokenizer(tokenizer)
            build_checkpoint_run(run, tokenizer, steps=[10 * (i + 1) for i in range(8)])
        return ["--checkpoints", str(run), "--tasks", f"capitals,{DATA / 'cf_world_facts.json'}",
                "--conjugates", "en", "--limit", "20", "--dtype", "float32"]
    if name == "smollm2":
        return ["--format", "chat", "--limit", "10"]
    raise SystemExit(f"unknown job {name!r} (tiny, smollm2)")


def _run(args: list[str], output: Path, cache: Path) -> tuple[float, dict, list]:
    shutil.rmtree(output, ignore_errors=True)
    env = {**os.environ, "VLLM_CACHE_ROOT": str(cache / "vllm"), "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "evaluate", *args, "--backend", "vllm",
                           "--no-report", "-o", str(output)], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    record = RunDirectory(output).read_record()
    summary = [json.loads(line) for line in (output / "summary.jsonl").read_text().splitlines()]
    return seconds, record, summary


def _values(summary: list) -> dict:
    return {(row["checkpoint"], row["task"], row["condition"], row["conjugate"], row["mode"], row["metric"]):
            row["value"] for row in summary}


def _difference(values: dict, reference: dict) -> str:
    """How a run's summary differs from the eager run's: rows and the largest difference."""
    differing = [key for key in reference if values.get(key) != reference[key]]
    if not differing:
        return "summary equal to eager"
    largest = max((abs(values[key] - reference[key]) for key in differing
                   if values.get(key) is not None and reference[key] is not None), default=float("nan"))
    modes = sorted({key[4] for key in differing})
    return (f"summary differs from eager in {len(differing)} of {len(reference)} rows ({', '.join(modes)}), "
            f"by at most {largest:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--workdir", type=Path, help="keep models and outputs here (default: a temporary folder)")
    options = parser.parse_args()
    folder = options.workdir or Path(tempfile.mkdtemp(prefix="bench-engine-start-"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in options.jobs.split(","):
        args = _job(name, folder)
        cache = folder / f"cache-{name}"
        shutil.rmtree(cache, ignore_errors=True)
        rows, reference = [], None
        _run(args + ["--limit", "1", "--engine-args", "enforce_eager=true"], folder / f"out-{name}", cache)  # warm-up
        for label, extra in (("eager", ["--engine-args", "enforce_eager=true"]),
                             ("compiled, cold cache", ["--engine-args", "enforce_eager=false"]),
                             ("compiled, warm cache", ["--engine-args", "enforce_eager=false"]),
                             ("automatic", [])):
            seconds, record, summary = _run(args + extra, folder / f"out-{name}", cache)
            values = _values(summary)
            reference = reference if reference is not None else values
            modes = (record.engine_stats or {}).get("engine_mode") or []
            starts = (record.engine_stats or {}).get("engine_start_s") or []
            why = "; ".join(mode.get("why", "") for mode in modes)
            rows.append((label, seconds))
            print(f"{name}: {label}: {seconds:.1f} s (engine start {starts} s){'; ' + why if why else ''}; "
                  f"{_difference(values, reference)}", flush=True)
        eager, cold, warm = rows[0][1], rows[1][1], rows[2][1]
        print(f"RATIO {name} compiled/eager: cold {cold / eager:.2f}x, warm {warm / eager:.2f}x; "
              f"automatic/best {rows[3][1] / min(eager, cold, warm):.2f}x")


if __name__ == "__main__":
    main()
