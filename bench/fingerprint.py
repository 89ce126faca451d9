"""Cost of full weights fingerprints (every byte, tensor by tensor) against sampled ones.

Two measurements, printed as ratios measured in one run:

1. ``--gib G``: writes a safetensors checkpoint of G GiB (tensors of 256 MiB) and times
   :func:`harness.checkpoints.fingerprints.weights_fingerprint` full (every byte) and sampled
   (headers + 16 blocks of 64 KiB a file), the full one again from its cache, and reading the
   file with ``safetensors.torch.load_file`` (what a load costs anyway). The page cache is
   dropped before each cold timing where the script can (root); otherwise it says the reads
   were cached.
2. ``--sweep N``: N checkpoints of the demo's model size (GPT-2, 128 wide, 3 layers, 2,048-word
   vocabulary: ~3.7 MB each) swept by the transformers engine on 20 items of world_facts, once
   with ``--fingerprint full`` and once with ``sampled`` (fresh folders and an empty fingerprint
   cache each time, the order alternated over ``--repeats``); prints the median seconds and ratio.

    python bench/fingerprint.py --gib 2
    python bench/fingerprint.py --sweep 44 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def bytes_bench(gib: float, root: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from harness.checkpoints.fingerprints import weights_fingerprint

    folder = root / "big"
    folder.mkdir()
    per_tensor = 256 * 1024 * 1024
    n = max(1, round(gib * 1024**3 / per_tensor))
    save_file({f"layers.{i}.weight": torch.randn(per_tensor // 4 // 4096, 4096) for i in range(n)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    size = (folder / "model.safetensors").stat().st_size / 1024**3
    cold = drop_caches()
    sampled, _ = timed(weights_fingerprint, folder, kind="sampled")
    drop_caches()
    full, _ = timed(weights_fingerprint, folder, kind="full")
    cached, _ = timed(weights_fingerprint, folder, kind="full")
    drop_caches()
    load, _ = timed(load_file, str(folder / "model.safetensors"))
    print(f"checkpoint: {size:.2f} GiB; page cache dropped before cold timings: "
          f"{'yes' if cold else 'no (not root): reads may be cached'}")
    print(f"sampled fingerprint:        {sampled * 1000:8.1f} ms")
    print(f"full fingerprint:           {full:8.2f} s  ({full / size:.2f} s/GiB)")
    print(f"full, again (cache):        {cached * 1000:8.1f} ms")
    print(f"safetensors load_file:      {load:8.2f} s  ({load / size:.2f} s/GiB)")
    print(f"ratio full / load_file: {full / load:.2f}")


def build_run(run: Path, n: int) -> None:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from transformers.utils import logging as hf_logging

    from harness.testing import build_tiny_tokenizer, write_trainer_state

    hf_logging.disable_progress_bar()

    tokenizer_dir = run.parent / f"{run.name}-tokenizer"
    build_tiny_tokenizer(tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    for step in range(1, n + 1):
        torch.manual_seed(step)
        config = GPT2Config(vocab_size=2048, n_embd=128, n_layer=3, n_head=4, n_positions=512,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
        folder = run / f"checkpoint-{step}"
        GPT2LMHeadModel(config).save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        write_trainer_state(folder, step, n)


def sweep_bench(n: int, repeats: int, root: Path) -> None:
    from harness.sweep.config import RunConfig
    from harness.sweep.evaluate import evaluate

    seconds: dict[str, list[float]] = {"full": [], "sampled": []}
    for repeat in range(repeats):
        for kind in (("full", "sampled") if repeat % 2 == 0 else ("sampled", "full")):
            run = root / f"run-{repeat}-{kind}"  # fresh files: nothing cached from the other kind
            build_run(run, n)
            os.environ["IFT_HARNESS_CACHE"] = str(root / f"cache-{repeat}-{kind}")
            config = RunConfig(checkpoints=str(run), tasks=["world_facts"], limit=20, backend="hf",
                               fingerprint=kind, output=str(root / f"results-{repeat}-{kind}"), conjugates=["en"])
            took, _ = timed(evaluate, config, progress=False)
            seconds[kind].append(took)
            print(f"repeat {repeat}: {kind:7s} {took:7.1f} s")
    full, sampled = (statistics.median(seconds[k]) for k in ("full", "sampled"))
    print(f"{n} checkpoints, median of {repeats}: full {full:.1f} s, sampled {sampled:.1f} s, "
          f"ratio full/sampled {full / sampled:.3f}")
    # The fingerprints alone, on fresh files with an empty cache: what the full kind adds to a sweep.
    run = root / "run-direct"
    build_run(run, n)
    os.environ["IFT_HARNESS_CACHE"] = str(root / "cache-direct")
    from harness.checkpoints.fingerprints import weights_fingerprint

    folders = sorted(run.iterdir())
    direct = {kind: timed(lambda: [weights_fingerprint(f, kind=kind) for f in folders])[0]
              for kind in ("sampled", "full")}
    print(f"fingerprints of the {n} checkpoints alone: full {direct['full']:.2f} s, sampled "
          f"{direct['sampled']:.3f} s; full adds {100 * (direct['full'] - direct['sampled']) / sampled:.2f}% "
          f"to the sampled sweep's {sampled:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=None, help="time fingerprints of a checkpoint of G GiB")
    parser.add_argument("--sweep", type=int, default=None, metavar="N", help="time a sweep of N small checkpoints")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ift-fingerprint-"))
    try:
        if args.gib or args.sweep is None:
            bytes_bench(args.gib or 2.0, root)
        if args.sweep:
            sweep_bench(args.sweep, args.repeats, root)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
