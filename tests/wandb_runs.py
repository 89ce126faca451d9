"""Reading an offline W&B run file (``run-<id>.wandb``) back, for the tracker tests.

wandb-core writes the run as a LevelDB-style log: a 7-byte file header (``:W&B``, a 2-byte
magic, a version byte), then records cut into chunks (a 4-byte CRC-32 of the chunk's type and
payload, a 2-byte length, a 1-byte type: full, first, middle, last). Chunks never cross a
32 KiB block boundary, and a block whose remaining room is smaller than a chunk header is
padded with zeros. The blocks are counted from the start of the file: the header is part of
block 0 (wandb-core's ``leveldb.NewWriterExt`` prepends it to the first block). A reader that
counts blocks from after the header misreads the padding at some block ends as the end of the
log and silently drops everything after it: this reader checks every chunk's CRC and the
padding, and raises on anything it cannot account for instead of stopping early.

``run.finish()`` returns before wandb-core has written the file's last bytes: the service
closes the file when it closes the run's stream, just after, in its own process. Read at once,
the file is now and then short, under load about once in 50 runs (the last record cut, or the
last checkpoints' rows missing); :func:`written` waits for the service first.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def written(folder: Path, run_id: str) -> Path:
    """The run file of offline run ``run_id`` under ``folder`` (``WANDB_DIR/wandb``), once
    wandb-core has written all of it: ``wandb.teardown()`` returns when the service has closed
    every run's stream, and with it the file."""
    import wandb

    wandb.teardown()
    (path,) = folder.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    return path


def records(path: Path) -> list[bytes]:
    """Every record of the run file, whole, in order; ValueError on a corrupt or cut file."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    found, pending, offset = [], None, HEADER
    while offset < len(data):
        room = BLOCK - offset % BLOCK
        if room < HEADER:
            if data[offset: offset + room].strip(b"\0"):
                raise ValueError(f"{path}: non-zero padding at byte {offset}")
            offset += room
            continue
        if offset + HEADER > len(data):
            raise ValueError(f"{path}: cut inside a chunk header at byte {offset}")
        checksum, length, kind = struct.unpack("<IHB", data[offset: offset + HEADER])
        payload = data[offset + HEADER: offset + HEADER + length]
        if len(payload) != length or zlib.crc32(bytes([kind]) + payload) != checksum:
            raise ValueError(f"{path}: bad chunk at byte {offset} (type {kind}, length {length})")
        if kind in (FULL, FIRST):
            if pending is not None:
                raise ValueError(f"{path}: a record starts at byte {offset} before the last one ended")
            pending = b""
        elif pending is None:
            raise ValueError(f"{path}: a continuation chunk without its first chunk at byte {offset}")
        pending += payload
        if kind in (FULL, LAST):
            found.append(pending)
            pending = None
        offset += HEADER + length
    if pending is not None:
        raise ValueError(f"{path}: the last record is cut")
    return found


def history(path: Path) -> list[dict[str, str]]:
    """The history rows of a run file: ``{key: value as JSON}`` each, in the order logged."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for data in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return rows
