"""Files written whole or line by line: atomic replacement, JSON Lines.

Every file the harness rewrites (run.json, summaries, reports, plots, data files) goes
through :func:`atomic_write_text` / :func:`atomic_write_bytes`: a sibling temporary file is
written, flushed to disk and renamed over the old one, so a reader never sees half a file and
a crash leaves either the old or the new version. JSON Lines files that grow a record at a
time (per-sample logs) are appended with :func:`append_jsonl`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping


def dumps(record: Mapping[str, Any]) -> str:
    """One JSON Lines line's text (no newline): UTF-8 as is, NaN allowed."""
    return json.dumps(record, ensure_ascii=False, allow_nan=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once (write a sibling temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp makes the file private (0600); give it the mode an ordinary write would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) all at once; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON, written atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """A whole JSON Lines file, written atomically."""
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))


def append_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records in one write, flushed to disk before returning."""
    text = "".join(dumps(r) + "\n" for r in records)
    if not text:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON Lines file ([] when it does not exist).

    A torn last line (the writer died mid-line) is dropped, and trimmed from the file so that
    later appends start clean; a bad line elsewhere is a ``ValueError`` naming the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                atomic_write_text(path, "".join(lines[:-1]))
                break
            raise ValueError(f"{path}: line {number + 1}: not valid JSON") from None
    return records
