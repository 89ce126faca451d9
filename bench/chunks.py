"""What engine calls sized by time cost: one checkpoint's examples scored in chunks of about
``CHUNK_SECONDS`` each (every chunk written to disk before the next is sent: the default) vs
in one engine call (``--batch-size`` larger than the job: the bar sits at 0 until the end).

A tiny Llama (``harness/testing.py``), the transformers engine by default (``--engine vllm``
for vLLM), the default tasks' items (generation and log-likelihoods), float32. The two ways are
timed interleaved, ``--repeats`` times each, each into a fresh results folder, the model already
loaded (only scoring and writing are timed). Prints examples/s of each and the cost, median
chunked / median whole - 1.

``--chunk-seconds`` sets the time a chunk aims at (default the harness's ``CHUNK_SECONDS``):
the tiny model scores ~100 examples/s on 2 cores, so at 5 s its chunks are far larger than a
real model's; 0.5 s gives it chunks of the size SmolLM2-135M gets at 5 s on that CPU.

Run:  python bench/chunks.py                 (~2 min on a 2-core CPU)
      python bench/chunks.py --chunk-seconds 0.5 --repeats 5
      python bench/chunks.py --limit 20 --repeats 5 --engine vllm
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from harness.backends import make_backend
from harness.checkpoints import Checkpoint
from harness.sweep.config import RunConfig
from harness.sweep import jobs
from harness.sweep.jobs import Chunking, chunk_size, score_job
from harness.sweep.sweep import Sweep
from harness.testing import build_tiny_model, build_tiny_tokenizer


def timed(config: RunConfig, checkpoint: Checkpoint, backend) -> tuple[float, int, list[int]]:
    """Seconds to score and write ``checkpoint``'s items, their number, the engine calls' sizes."""
    sweep = Sweep(config, engine=backend.name)
    try:
        sweep.identify(checkpoint, backend)
        job = sweep.prepare(checkpoint, backend)
        chunking: Chunking = chunk_size(config)
        start, sizes = time.perf_counter(), []
        for indices, samples in score_job(backend, job.items, job.prompts, chunking):
            sweep.write_samples(job, indices, samples)
            sizes.append(len(indices))
        return time.perf_counter() - start, len(job.items), sizes
    finally:
        sweep.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="hf", choices=["hf", "vllm"])
    parser.add_argument("--limit", type=int, default=10, help="examples per task condition (default: 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-seconds", type=float, default=jobs.CHUNK_SECONDS)
    args = parser.parse_args()
    jobs.CHUNK_SECONDS = args.chunk_seconds
    root = Path(tempfile.mkdtemp(prefix="bench-chunks-"))
    build_tiny_tokenizer(root / "tokenizer")
    model = build_tiny_model(root / "model", root / "tokenizer", arch="llama")
    checkpoint = Checkpoint(label="tiny", step=None, model=str(model))
    backend = make_backend(args.engine, dtype="float32", max_model_len=256)
    backend.load(checkpoint)
    times: dict[str, list[float]] = {"chunked": [], "whole": []}
    for repeat in range(args.repeats):
        for way in (("chunked", "whole") if repeat % 2 == 0 else ("whole", "chunked")):
            config = RunConfig(output=str(root / f"{way}-{repeat}"), limit=args.limit, bootstrap_resamples=10,
                               truncate="left", batch_size=None if way == "chunked" else 1_000_000,
                               backend=args.engine)
            seconds, items, sizes = timed(config, checkpoint, backend)
            times[way].append(seconds)
            print(f"{way:8s} repeat {repeat}: {items} examples in {seconds:.2f} s ({items / seconds:.1f}/s), "
                  f"engine calls of {sizes}", flush=True)
    backend.close()
    chunked, whole = statistics.median(times["chunked"]), statistics.median(times["whole"])
    print(f"\n{args.engine}, {items} examples, chunks of ~{args.chunk_seconds:g} s, {platform.machine()}: "
          f"chunked median {chunked:.2f} s, whole {whole:.2f} s: cost {chunked / whole - 1:+.1%}")


if __name__ == "__main__":
    main()
