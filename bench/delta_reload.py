"""Delta reloads: what an in-place vLLM reload reads and costs when only some tensors changed.

1. How many tensors two checkpoints differ in: two checkpoints of the tiny test run (two
   random initialisations), two saves of a real (tiny) finetuning run of the tiny Llama
   (:func:`harness.training.run.run_finetune`, full finetuning, 4 steps saved every 2, plain and ``qk_only``)
   with what a delta reload would read, and the bundled SmolLM2-135M against a
   query/key-only changed copy of it (:func:`harness.testing.finetune_query_key`).
2. One vLLM engine (float32, eager, canary check on) on SmolLM2-135M alternates between the
   model and its query/key-only copy, ``--repeats`` times with delta reloads and as many with
   every tensor reloaded (the plan forced to :func:`~harness.backends.vllm_reload.full_plan`);
   prints tensors and bytes read and the reload and canary seconds of each (medians).

Both files were just written or read, so every read is served from the page cache: the bytes
saved are what a cold disk would also save, the seconds are those of a warm one.

    python bench/delta_reload.py --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def changed_tensors(first: Path, second: Path) -> tuple[int, int]:
    """(tensors whose bytes differ, tensors) between two single-file checkpoints."""
    from harness.checkpoints.fingerprints import tensor_hashes

    a, b = tensor_hashes(first / "model.safetensors"), tensor_hashes(second / "model.safetensors")
    names = [n for n in a if n != "__metadata__"]
    return sum(a[n] != b.get(n) for n in names), len(names)


def sft_saves(root: Path, qk_only: bool) -> tuple[Path, Path]:
    """Two saves (steps 2 and 4) of a full finetuning run of the tiny Llama on 16 records."""
    import json

    from harness.testing import build_tiny_model
    from harness.training.config import FinetuneConfig
    from harness.training.run import run_finetune

    model = build_tiny_model(root / "tiny-llama", root / "tokenizer")
    data = root / "alpaca.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"What is item {i}?", "input": f"Item {i} is number {i * 7}.",
                                        "output": f"number {i * 7}"}) + "\n" for i in range(16)))
    out = run_finetune(FinetuneConfig(model=str(model), dataset=str(data), output_dir=str(root / f"sft-qk{qk_only}"),
                                      method="full", format="alpaca", max_steps=4, batch_size=4, save_steps=2,
                                      logging_steps=1, learning_rate=1e-3, max_length=128, progress=False,
                                      qk_only=qk_only))
    return out / "checkpoint-2", out / "checkpoint-4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="reloads each way (delta, full) per direction")
    args = parser.parse_args()

    from harness.backends import vllm as vllm_backend
    from harness.backends.vllm import VLLMBackend
    from harness.backends.vllm_reload import LoadedWeights, full_plan, plan_reload
    from harness.checkpoints import Checkpoint
    from harness.checkpoints.bundled import bundled_model_dir
    from harness.checkpoints.fingerprints import tensor_hashes
    from harness.testing import build_checkpoint_run, build_tiny_tokenizer, finetune_query_key

    root = Path(tempfile.mkdtemp(prefix="delta-reload-"))
    build_tiny_tokenizer(root / "tokenizer")
    run = build_checkpoint_run(root / "run", root / "tokenizer", steps=(10, 20))
    diff, total = changed_tensors(run / "checkpoint-10", run / "checkpoint-20")
    print(f"tiny test run, checkpoint-10 vs checkpoint-20: {diff} of {total} tensors differ")

    for qk_only in (False, True):
        first, second = sft_saves(root, qk_only)
        diff, total = changed_tensors(first, second)
        plan = plan_reload(LoadedWeights.of(first), str(second))
        print(f"tiny Llama full finetuning{' (qk_only)' if qk_only else ''}, checkpoint-2 vs checkpoint-4: {diff} of "
              f"{total} tensors differ; reload plan: {'delta' if plan.delta else 'full'}, {plan.describe()}")

    base = bundled_model_dir()
    copy = finetune_query_key(base, root / "smollm2-qk")
    for folder in (base, copy):  # hashing: what fingerprinting the checkpoint costs once (cached after)
        start = time.perf_counter()
        tensor_hashes(folder / "model.safetensors")
        print(f"per-tensor hashes of {folder.name}: {time.perf_counter() - start:.2f} s (then cached)")
    diff, total = changed_tensors(base, copy)
    print(f"SmolLM2-135M vs its query/key-only copy: {diff} of {total} tensors differ")

    checkpoints = [Checkpoint(label="base", step=0, model=str(base)), Checkpoint(label="qk", step=1, model=str(copy))]
    backend = VLLMBackend(dtype="float32", enforce_eager=True, max_model_len=512)
    real_plan = vllm_backend.plan_reload
    rows: dict[str, list[dict]] = {"delta": [], "full": []}
    try:
        backend.load(checkpoints[0])
        for mode in ("delta", "full"):
            vllm_backend.plan_reload = real_plan if mode == "delta" else (lambda loaded, path: full_plan(path))
            for _ in range(args.repeats):
                for checkpoint in (checkpoints[1], checkpoints[0]):
                    backend.load(checkpoint)
                    record = dict(backend.stats["reload_reads"][-1])
                    record["canary_s"] = backend.stats["canary"][-1]["seconds"]
                    record["canary_ok"] = backend.stats["canary"][-1]["ok"]
                    rows[mode].append(record)
    finally:
        vllm_backend.plan_reload = real_plan
        backend.close()
    print(f"engine start {backend.stats['engine_start_s']} s; fallbacks {backend.stats['fallbacks']}")
    for mode, records in rows.items():
        first = records[0]
        print(f"{mode:5s}: {first['tensors']} of {first['of_tensors']} tensors, "
              f"{first['bytes'] / 1e6:.1f} of {first['of_bytes'] / 1e6:.1f} MB read; reload "
              f"{statistics.median(r['seconds'] for r in records):.3f} s median "
              f"({min(r['seconds'] for r in records):.3f}-{max(r['seconds'] for r in records):.3f}); canary "
              f"{statistics.median(r['canary_s'] for r in records):.2f} s median; "
              f"all canaries ok: {all(r['canary_ok'] for r in records)}; n={len(records)}")


if __name__ == "__main__":
    main()
