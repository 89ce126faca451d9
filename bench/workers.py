"""Scale-out benchmarks of ``harness evaluate``: several engines, and batches sized for the engine.

Two measurements, each printed as a ratio measured in one run:

1. ``--workers 2`` against ``--workers 1`` on K tiny checkpoints with the transformers
   engine (each worker's engine gets its share of the CPUs), with the driver's peak memory
   after 1 and after K checkpoints and each worker's resident memory after its first and its
   last checkpoint (recorded by the sweep in run.json).
2. ``--phase batches``: examples per second of one vLLM checkpoint sent 64 examples per engine
   call (the old default) against the new sizing (all of a checkpoint's requests, up to
   ``--flush-every``), for a tiny model and, with ``--models smollm2``, the bundled
   SmolLM2-135M-Instruct; ``--models large`` adds a model made from a config (GPU machines).
   On a GPU it also prints the mean GPU utilisation sampled with nvidia-smi during each run.

    python bench/workers.py --phase workers --k 8
    python bench/workers.py --phase batches --models tiny,smollm2
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.results import RunDirectory

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
REPEATS = 3


def _fixtures(folder: Path, k: int) -> Path:
    from harness.testing import build_checkpoint_run, build_tiny_tokenizer

    tokenizer = folder / "tokenizer"
    if not tokenizer.exists():
        build_tiny_tokenizer(tokenizer)
    run = folder / f"run-{k}"
    if not run.exists():
        build_checkpoint_run(run, tokenizer, steps=[10 * (i + 1) for i in range(k)])
    return run


def _evaluate(args: list[str]) -> float:
    """Seconds of one ``harness evaluate`` process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "evaluate", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return seconds


def phase_workers(folder: Path, k: int, limit: int) -> None:
    run = _fixtures(folder, k)
    common = ["--tasks", f"capitals,{DATA / 'cf_world_facts.json'}", "--backend", "hf", "--limit", str(limit),
              "--conjugates", "en", "--no-report"]
    timings = {}
    for workers in (1, 2):
        output = folder / f"out-{workers}"
        shutil.rmtree(output, ignore_errors=True)
        timings[workers] = _evaluate(["--checkpoints", str(run), "--workers", str(workers), "--output",
                                         str(output), *common])
        for worker in RunDirectory(output).read_record().workers or []:
            memory = worker["resident_mib_after_each_checkpoint"]
            growth = (memory[-1] / memory[0] - 1) * 100 if len(memory) > 1 else 0.0
            print(f"--workers {workers}, worker {worker['worker']}: {len(memory)} checkpoints, resident "
                  f"{memory[0]:.0f} -> {memory[-1]:.0f} MiB ({growth:+.1f}%)")
        print(f"--workers {workers}: {timings[workers]:.1f} s")
    print(f"RATIO workers 2 vs 1: {timings[1] / timings[2]:.2f}x (target >= 1.5x)")
    # The driver's memory must not grow with the number of checkpoints: one checkpoint vs K.
    peaks = {}
    for count in (1, k):
        one = _fixtures(folder, count)
        output = folder / f"driver-{count}"
        shutil.rmtree(output, ignore_errors=True)
        script = ("import resource, sys\nfrom harness.cli import main\nmain(sys.argv[1:])\n"
                  "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        done = subprocess.run([sys.executable, "-c", script, "evaluate", "--checkpoints", str(one), "--workers", "2",
                               "--output", str(output), *common], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        peaks[count] = int(done.stdout.strip().splitlines()[-1]) / 1024
        print(f"driver peak resident memory with {count} checkpoint(s): {peaks[count]:.0f} MiB")
    print(f"RATIO driver memory {k} vs 1 checkpoints: {peaks[k] / peaks[1]:.2f}x")


class _GpuSampler:
    """Mean GPU utilisation while a run goes on (nvidia-smi every 0.5 s); None without a GPU."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.samples += [float(x) for x in out.split()]
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return
            time.sleep(0.5)

    def __enter__(self) -> "_GpuSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def _model(name: str, folder: Path) -> Path:
    if name == "tiny":
        return _fixtures(folder, 1) / "checkpoint-10"
    if name == "smollm2":
        from harness.checkpoints.bundled import bundled_model_dir

        return bundled_model_dir()
    if name == "large":  # a Llama of about 1B parameters made from a config: random weights
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        from harness.checkpoints.bundled import bundled_model_dir

        path = folder / "large"
        if not path.exists():
            tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
            config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=5632,
                                 num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
                                 max_position_embeddings=2048, torch_dtype="bfloat16")
            LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
            tokenizer.save_pretrained(path)
        return path
    raise SystemExit(f"unknown model {name!r} (tiny, smollm2, large)")


class _CheckpointLines(logging.Handler):
    """The sweep's line per checkpoint ("LABEL: N examples in S s ..."): its examples and seconds."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.examples, self.seconds = 0, 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if "examples in" in record.msg:
            self.examples += record.args[2]
            self.seconds += record.args[3]


def phase_batches(folder: Path, models: list[str], limit: int) -> None:
    """One engine per model, started (and warmed up) before anything is timed; then the same
    checkpoint evaluated into fresh folders at 64 examples per engine call and engine-sized,
    alternating, ``REPEATS`` times each: the medians' ratio. The time is the sweep's own for the
    checkpoint (its console line: engine calls and sample writes, not the summary)."""
    from statistics import median

    from harness.backends import make_backend
    from harness.sweep.config import RunConfig
    from harness.sweep.evaluate import evaluate
    from harness.sweep.sweep import checkpoint_log

    for name in models:
        model = _model(name, folder)
        backend = make_backend("vllm", **({} if name == "tiny" else {"max_model_len": 2048}))
        try:
            def run(label: str, batch_size: int | None, examples_limit: int | None) -> tuple[float, int]:
                output = folder / f"batches-{name}-{label}"
                shutil.rmtree(output, ignore_errors=True)
                config = RunConfig(model=str(model), tasks=["world_facts"], backend="vllm", limit=examples_limit,
                                   conjugates=["en"], output=str(output), batch_size=batch_size, truncate="left")
                lines = _CheckpointLines()
                checkpoint_log.setLevel(logging.INFO)
                checkpoint_log.addHandler(lines)
                try:
                    evaluate(config, backend=backend, progress=False)
                finally:
                    checkpoint_log.removeHandler(lines)
                return lines.seconds, lines.examples

            run("warm-up", None, 2)  # the engine start, outside the timings
            times: dict[str, list[float]] = {"64 per call": [], "engine-sized": []}
            examples = 0
            for repeat in range(REPEATS):
                order = [("64 per call", 64), ("engine-sized", None)]
                for label, batch_size in order if repeat % 2 == 0 else order[::-1]:
                    with _GpuSampler() as gpu:
                        seconds, examples = run(label.split()[0], batch_size, limit)
                    times[label].append(seconds)
                    utilisation = f", GPU {gpu.mean:.0f}%" if gpu.mean is not None else ""
                    print(f"{name}: {label}: {examples} examples in {seconds:.1f} s = {examples / seconds:.1f} "
                          f"examples/s{utilisation}", flush=True)
        finally:
            backend.close()
        ratio = median(times["64 per call"]) / median(times["engine-sized"])
        print(f"RATIO {name} engine-sized vs 64 per call: {ratio:.2f}x (medians of {REPEATS}; "
              f"{examples} examples of world_facts, generation and log-likelihood)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=["workers", "batches"], required=True)
    parser.add_argument("--k", type=int, default=8, help="checkpoints (workers phase)")
    parser.add_argument("--limit", type=int, help="examples per task condition (default: workers 20, batches 200)")
    parser.add_argument("--models", default="tiny", help="comma-separated: tiny, smollm2, large (batches phase)")
    parser.add_argument("--workdir", type=Path, help="keep the models here (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="ift-workers-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}")
    if args.phase == "workers":
        phase_workers(folder, args.k, args.limit or 20)
    else:
        phase_batches(folder, args.models.split(","), args.limit or 200)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
