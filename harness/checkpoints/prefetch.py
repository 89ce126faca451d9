"""Reading the next checkpoint while this one is scored.

Before a checkpoint is scored on the one engine of a sweep, two things read every byte of its
weights: identifying it (the full fingerprint hashes each tensor,
:mod:`harness.checkpoints.fingerprints`) and loading it (vLLM reads the file again). Both wait on
the disk when the file is not in the page cache: a run copied from elsewhere, a checkpoint
written long ago, a network filesystem, a sweep larger than memory. A :class:`Prefetcher` does
that reading for the next checkpoint on a background thread while the current one is scored
(it starts once the current one is loaded, so as not to slow that load): it computes the
weights' per-tensor hashes (cached on disk, so identifying the checkpoint then
reads only that cache), which leaves the bytes in the page cache for the load. With
``--fingerprint sampled`` (which reads a few blocks) it asks the kernel to read the weight
files ahead instead.

Only where memory allows: when a checkpoint's weights are more than half of the memory the
system reports available, reading them ahead would push out pages the current checkpoint is
still using, so that checkpoint is not read ahead (and is read when its turn comes, as
without a prefetcher). A failure while reading ahead is left to the checkpoint's own
identification, which reads the files again and reports it.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from harness.checkpoints.discovery import Checkpoint
from harness.checkpoints.fingerprints import FULL, weight_files, weights_fingerprint

log = logging.getLogger("harness")

#: A checkpoint is read ahead only when its weights take at most this share of available memory.
MEMORY_SHARE = 0.5


def available_memory() -> int | None:
    """Bytes of memory the system reports available (Linux's MemAvailable; None elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def local_folders(checkpoint: Checkpoint) -> list[Path]:
    """The folders on disk that hold ``checkpoint``'s weights (its model's and its adapter's;
    a hub model has none)."""
    return [Path(folder) for folder in (checkpoint.model, checkpoint.adapter)
            if folder is not None and os.path.isdir(folder)]


class Prefetcher:
    """Reads checkpoints ahead on one background thread (module docstring).

    :meth:`ahead` starts reading a checkpoint; :meth:`wait` blocks until that reading is done
    (call it before identifying the checkpoint, so the two never hash one file at once);
    :meth:`close` stops. ``fingerprint`` is the run's kind (:data:`FULL` or sampled). A
    prefetcher made with ``enabled=False`` (``--no-prefetch``) reads nothing ahead: each
    checkpoint is read when its turn comes.
    """

    def __init__(self, fingerprint: str = FULL, *, enabled: bool = True):
        self.fingerprint = fingerprint
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-prefetch") if enabled else None
        self._reading: dict[tuple, Future] = {}

    def ahead(self, checkpoint: Checkpoint) -> bool:
        """Start reading ``checkpoint``'s weights; False when it is not read ahead (disabled,
        nothing on disk, already asked, or too large for the memory available)."""
        key = _key(checkpoint)
        folders = local_folders(checkpoint)
        if self._pool is None or key in self._reading or not folders:
            return False
        size = sum(path.stat().st_size for folder in folders for path in weight_files(folder))
        memory = available_memory()
        if memory is not None and size > MEMORY_SHARE * memory:
            log.debug("prefetch: %s not read ahead: its weights (%.1f GB) are more than half the memory available "
                      "(%.1f GB)", checkpoint.label, size / 1e9, memory / 1e9)
            return False
        self._reading[key] = self._pool.submit(self._read, folders)
        return True

    def wait(self, checkpoint: Checkpoint) -> None:
        """Block until ``checkpoint``'s reading ahead (if any) is done."""
        future = self._reading.pop(_key(checkpoint), None)
        if future is not None:
            try:
                future.result()
            except Exception as error:  # its identification reads the files again and says what is wrong
                log.debug("prefetch: reading %s ahead failed: %s", checkpoint.label, error)

    def close(self) -> None:
        """Stop: readings not started are dropped, the one under way is waited for."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._reading.clear()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, folders: list[Path]) -> None:
        for folder in folders:
            if self.fingerprint == FULL:
                weights_fingerprint(folder, kind=FULL)
            else:
                for path in weight_files(folder):
                    with path.open("rb") as stream:
                        os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)


def _key(checkpoint: Checkpoint) -> tuple:
    return checkpoint.model, checkpoint.revision, checkpoint.adapter
