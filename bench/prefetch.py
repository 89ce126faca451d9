"""Reading the next checkpoint while this one is scored: what ``--prefetch`` saves.

Before a checkpoint is scored, the sweep identifies it (hashing every byte of its weights) and
loads it (vLLM's in-place reload, then the canary's transformers reference reads the folder
again). With ``--prefetch`` (the default) the next checkpoint's weights are hashed on a
background thread while the current one is scored, which also leaves them in the page cache
(:mod:`harness.checkpoints.prefetch`).

The checkpoints: ``--k`` copies of the bundled SmolLM2-135M-Instruct (float32, 538 MB of
safetensors each), every tensor moved by seeded noise of 1e-3 of its scale (as a training step
moves every tensor), in one run folder. Each sweep: ``--tasks`` with ``--limit`` examples per
condition, English prompts, chat format, on one vLLM engine kept across the sweeps (started
once, by a warm-up sweep that is not counted). Before every sweep the weight files are evicted
from the page cache (``posix_fadvise(DONTNEED)``) and the fingerprint cache is emptied: each
sweep starts with the checkpoints on disk, as a sweep of a run written earlier does. Sweeps with
and without prefetching alternate, ``--repeats`` each. Printed: medians of the whole sweep, of
the time spent identifying checkpoints (main thread) and loading them (reload + canary), and
the difference.

    python bench/prefetch.py --k 4 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def cpu_name() -> str:
    """The CPU's model name and whether it has AMX (what the figures depend on)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.machine())
    return f"{name}, {'with' if 'amx_bf16' in text else 'without'} AMX"


def make_run(root: Path, k: int) -> Path:
    """``k`` noisy copies of the bundled model as ``root/run/checkpoint-N``."""
    import torch
    from safetensors.torch import load_file, save_file

    from harness.checkpoints.bundled import bundled_model_dir

    source = bundled_model_dir()
    tensors = load_file(str(source / "model.safetensors"))
    run = root / "run"
    for index in range(1, k + 1):
        folder = run / f"checkpoint-{index * 10}"
        shutil.copytree(source, folder)
        generator = torch.Generator().manual_seed(index)
        moved = {name: (t + 1e-3 * t.float().std().clamp_min(1e-6) * torch.randn(t.shape, generator=generator))
                 .to(t.dtype).contiguous() for name, t in tensors.items()}
        save_file(moved, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return run


def evict(run: Path) -> None:
    for path in run.rglob("*"):
        if path.is_file():
            with path.open("rb") as stream:
                os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=4, help="checkpoints in the run")
    parser.add_argument("--repeats", type=int, default=3, help="sweeps with and without prefetching, each")
    parser.add_argument("--tasks", default="capitals")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args()

    from harness.backends import make_backend
    from harness.checkpoints.bundled import cache_dir
    from harness.sweep.config import RunConfig
    from harness.sweep.evaluate import evaluate
    from harness.sweep.sweep import Sweep

    timings: dict[str, float] = {}

    def timed(name, method):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return method(*a, **kw)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    Sweep.identify = timed("identify", Sweep.identify)
    with tempfile.TemporaryDirectory(prefix="bench-prefetch-") as tmp:
        root = Path(tmp)
        run = make_run(root, args.k)
        size = sum(p.stat().st_size for p in run.rglob("model.safetensors"))
        backend = make_backend("vllm", dtype="float32")
        backend.load = timed("load", backend.load)

        def sweep(prefetch: bool, name: str) -> dict[str, float]:
            evict(run)
            shutil.rmtree(cache_dir() / "fingerprints", ignore_errors=True)
            timings.clear()
            config = RunConfig(checkpoints=str(run), tasks=args.tasks.split(","), limit=args.limit,
                               conjugates=["en"], format="chat", output=str(root / name), prefetch=prefetch)
            start = time.perf_counter()
            evaluate(config, backend=backend, progress=False)
            return {"sweep": time.perf_counter() - start, **timings}

        try:
            sweep(True, "warm-up")  # the engine starts here
            results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
            for repeat in range(args.repeats):
                for prefetch in ((True, False) if repeat % 2 == 0 else (False, True)):
                    results[prefetch].append(sweep(prefetch, f"r{repeat}-{prefetch}"))
                    print(f"repeat {repeat} prefetch={prefetch}: " + ", ".join(
                        f"{key} {value:.2f} s" for key, value in results[prefetch][-1].items()), flush=True)
        finally:
            backend.close()

    print(f"\n{cpu_name()}, {os.cpu_count()} cores; {args.k} checkpoints of "
          f"{size / args.k / 1e6:.0f} MB; {args.tasks} --limit {args.limit}, English, chat; {args.repeats} sweeps each")
    print("| | with --prefetch | --no-prefetch | saved |")
    print("|---|---|---|---|")
    for key in ("sweep", "identify", "load"):
        on = statistics.median(r.get(key, 0.0) for r in results[True])
        off = statistics.median(r.get(key, 0.0) for r in results[False])
        print(f"| {key} (median s) | {on:.2f} | {off:.2f} | {off - on:+.2f} ({(off - on) / args.k:+.2f} a checkpoint) |")


if __name__ == "__main__":
    main()
