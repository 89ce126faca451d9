"""Cost of a checkpoint's weights fingerprint: the default (sampled) one against a full hash.

Writes a safetensors checkpoint of ``--gib`` GiB (a few large tensors), then times
:func:`harness.checkpoints.identity.weights_fingerprint` — the default, which reads every file's header and
16 blocks of 64 KiB, and ``full=True``, which reads every byte — and prints both and their
ratio. Each timing is taken after asking the kernel to drop its page cache (needs root; the
script says when it could not, in which case the file is likely cached and the full hash is
measured at memory speed, its best case).

    python bench/fingerprint.py --gib 4
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def build(folder: Path, gib: float) -> None:
    import torch
    from safetensors.torch import save_file

    per_tensor = 256 * 1024 * 1024  # bytes
    n = max(1, round(gib * 1024**3 / per_tensor))
    tensors = {f"layers.{i}.weight": torch.randn(per_tensor // 4 // 4096, 4096) for i in range(n)}
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "llama"}\n')


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0, help="checkpoint size in GiB")
    args = parser.parse_args()
    from harness.checkpoints.identity import weights_fingerprint

    folder = Path(tempfile.mkdtemp(prefix="ift-fingerprint-"))
    try:
        seconds, _ = timed(build, folder, args.gib)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1024**3
        print(f"checkpoint: {size:.2f} GiB written in {seconds:.1f} s")
        cold = drop_caches()
        sampled, fingerprint = timed(weights_fingerprint, folder)
        drop_caches()
        full, _ = timed(weights_fingerprint, folder, full=True)
        print(f"page cache dropped before each timing: {'yes' if cold else 'no (not root): cached reads'}")
        print(f"sampled fingerprint (default): {sampled * 1000:.1f} ms  {fingerprint}")
        print(f"full content hash:             {full:.2f} s")
        print(f"ratio full/sampled: {full / sampled:.0f}x")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
