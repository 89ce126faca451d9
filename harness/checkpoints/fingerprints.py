"""Fingerprints of a checkpoint's weights: what tells two checkpoints apart.

A results folder serves a label's earlier samples only to the same weights, so the fingerprint
must change whenever any weight does. Finetuning that touches a few tensors (norms only, frozen
layers, attention query/key only, a merged LoRA) changes a few bytes in a large file, so
sampling the file cannot be trusted; by default every byte is read.

- ``full`` (:data:`FULL`, the default): each safetensors tensor's bytes are hashed on their own
  (xxh3-64, a fast non-cryptographic hash), as are other weight files whole; the fingerprint hashes
  the files' names and sizes and these per-tensor hashes. The per-tensor hashes are kept in
  ``cache_dir()/fingerprints`` keyed by the file's path, size and modification time, so a file is
  read once however often it is identified, and what a reload changes can be told tensor by tensor
  (:func:`tensor_hashes`).
- ``sampled`` (:data:`SAMPLED`, opt-in for huge hub models): every file's name and size, each
  safetensors header and 16 blocks of 64 KiB of its bytes. It tells training steps apart (a step
  moves nearly every tensor) but not a change confined to a few tensors.

Both kinds carry their name as a prefix (``full:…``, ``sampled:…``); two fingerprints are only
compared when they are of one kind.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from harness.checkpoints import ADAPTER_CONFIG
from harness.checkpoints.bundled import cache_dir

FULL = "full"
SAMPLED = "sampled"
FINGERPRINTS = (FULL, SAMPLED)

SAMPLED_BLOCKS = 16
BLOCK_BYTES = 64 * 1024
_READ_BYTES = 8 << 20
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CONFIG_FILES = ("config.json", ADAPTER_CONFIG)
#: Bumped when what :func:`tensor_hashes` computes changes (old cache entries are then ignored).
_CACHE_VERSION = 1


def weights_fingerprint(folder: str | os.PathLike[str], *, kind: str = FULL) -> str | None:
    """The ``kind`` fingerprint of the weight and config files in ``folder`` (module
    docstring); None when the folder holds none."""
    if kind not in FINGERPRINTS:
        raise ValueError(f"fingerprint: {kind!r} is not one of {', '.join(FINGERPRINTS)}")
    folder = Path(folder)
    files = weight_files(folder) if folder.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        if kind == FULL:
            digest.update(json.dumps(tensor_hashes(path), sort_keys=True).encode())
        else:
            with path.open("rb") as stream:
                digest.update(_sampled_bytes(stream, path))
    return f"{kind}:{digest.hexdigest()[:24]}"


def tensor_hashes(path: str | os.PathLike[str]) -> dict[str, str]:
    """The xxh3-64 hash of each tensor's bytes in a safetensors file (by tensor name), or of a
    whole other file (under its file name); cached (module docstring)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{_CACHE_VERSION}".encode()).hexdigest()
    cached = _cache_folder() / f"{key}.json"
    try:
        return json.loads(cached.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    with path.open("rb") as stream:
        hashes = _safetensors_tensor_hashes(stream, stat.st_size) if path.suffix == ".safetensors" else None
        if hashes is None:
            stream.seek(0)
            hashes = {path.name: _hash_range(stream, 0, stat.st_size)}
    _write_cache(cached, hashes)
    return hashes


def tensor_bytes(path: str | os.PathLike[str]) -> dict[str, int] | None:
    """The size in bytes of each tensor of a safetensors file (by tensor name), read from its
    header; None when the header does not parse."""
    path = Path(path)
    with path.open("rb") as stream:
        parsed = _safetensors_header(stream, path.stat().st_size)
    if parsed is None:
        return None
    header, _ = parsed
    return {name: info["data_offsets"][1] - info["data_offsets"][0]
            for name, info in header.items() if name != "__metadata__"}


def live_fingerprint(model: Any) -> str:
    """A fingerprint of a model in memory (a model being trained): every parameter's name,
    shape and dtype and a strided sample of its values."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            flat = parameter.detach().reshape(-1)
            stride = max(1, flat.numel() // 256)
            sample = flat[::stride][:256].to("cpu", torch.float32)
            digest.update(f"{name}\0{tuple(parameter.shape)}\0{parameter.dtype}\0".encode())
            digest.update(sample.numpy().tobytes())
    return f"live:{digest.hexdigest()[:24]}"


def fingerprint_kind(fingerprint: str | None) -> str | None:
    """``full``, ``sampled``, ``live``, ``hub``... : what a fingerprint string was made by."""
    return None if fingerprint is None else fingerprint.split(":", 1)[0]


# --------------------------------------------------------------------------- reading files


def weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files of ``folder`` a fingerprint reads: weights (safetensors, .bin, .pt) and configs."""
    folder = Path(folder)
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and (path.suffix in _WEIGHT_SUFFIXES or path.name in _CONFIG_FILES))


def _safetensors_header(stream: BinaryIO, size: int) -> tuple[dict[str, Any], int] | None:
    """A safetensors file's header and the offset its data starts at; None when the header does
    not parse."""
    head = stream.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else 0
    if not 0 < length <= size - 8:
        return None
    try:
        header = json.loads(stream.read(length))
    except ValueError:
        return None
    return (header, 8 + length) if isinstance(header, dict) else None


def _safetensors_tensor_hashes(stream: BinaryIO, size: int) -> dict[str, str] | None:
    """Per-tensor hashes of a safetensors file; None when its header does not parse (the file
    is then hashed whole, and its load will say what is wrong with it)."""
    parsed = _safetensors_header(stream, size)
    if parsed is None:
        return None
    header, start = parsed
    hashes = {"__metadata__": xxhash.xxh3_64_hexdigest(json.dumps(header.get("__metadata__"), sort_keys=True).encode())}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        # shape and dtype are part of what a tensor is: a reshaped tensor of equal bytes differs
        shape = f"{info.get('dtype')}{info.get('shape')}"
        hashes[name] = f"{_hash_range(stream, start + begin, start + end)}:{shape}"
    return hashes


def _hash_range(stream: BinaryIO, begin: int, end: int) -> str:
    stream.seek(begin)
    digest = xxhash.xxh3_64()
    left = end - begin
    while left > 0:
        chunk = stream.read(min(_READ_BYTES, left))
        if not chunk:
            break
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def _sampled_bytes(stream: BinaryIO, path: Path) -> bytes:
    size = path.stat().st_size
    head = b""
    if path.suffix == ".safetensors":
        first = stream.read(8)
        length = int.from_bytes(first, "little") if len(first) == 8 else 0
        head = first + (stream.read(length) if 0 < length <= size - 8 else b"")
    stream.seek(0)
    if size <= SAMPLED_BLOCKS * BLOCK_BYTES:
        return head + stream.read()
    step = (size - BLOCK_BYTES) // (SAMPLED_BLOCKS - 1)
    blocks = [head]
    for index in range(SAMPLED_BLOCKS):
        stream.seek(index * step)
        blocks.append(stream.read(BLOCK_BYTES))
    return b"".join(blocks)


def _cache_folder() -> Path:
    return cache_dir() / "fingerprints"


def _write_cache(target: Path, hashes: dict[str, str]) -> None:
    """Best effort: a read-only cache costs a re-read next time, never a wrong answer."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # a process and thread of its own: a sweep's prefetch thread writes beside its main thread
        partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(json.dumps(hashes), encoding="utf-8")
        os.replace(partial, target)
    except OSError:
        pass
