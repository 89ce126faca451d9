"""Memory of a process tree, read from /proc: resident and peak resident memory of the
engine processes an evaluating process owns, as a snapshot and as a background sampler.
Used by the sweep benchmark (bench/sweep.py); Linux only."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def _status(pid: int) -> dict[str, int] | None:
    """VmRSS, VmHWM, RssAnon and RssFile (bytes) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out if "VmRSS" in out else None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # the process is gone
        return []
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def engine_pids(owner: int) -> list[int]:
    """The engine processes of ``owner``: its descendants except multiprocessing helpers."""
    return [p for p in _descendants(owner) if "resource_tracker" not in _cmdline(p)]


def memory_snapshot(owner: int) -> dict[str, Any]:
    """RSS / peak RSS (VmHWM) of ``owner``'s engine processes (summed) and of ``owner``."""
    procs = []
    for pid in engine_pids(owner):
        st = _status(pid)
        if st:
            procs.append({"pid": pid, "rss_mib": st["VmRSS"] / MIB, "hwm_mib": st.get("VmHWM", 0) / MIB,
                          "anon_mib": st.get("RssAnon", 0) / MIB, "file_mib": st.get("RssFile", 0) / MIB,
                          "cmd": _cmdline(pid)[:80]})
    own = _status(owner) or {"VmRSS": 0, "VmHWM": 0}
    return {
        "engine_rss_mib": round(sum(p["rss_mib"] for p in procs), 1),
        "engine_hwm_mib": round(sum(p["hwm_mib"] for p in procs), 1),
        "engine_anon_mib": round(sum(p["anon_mib"] for p in procs), 1),
        "engine_file_mib": round(sum(p["file_mib"] for p in procs), 1),
        "engine_processes": len(procs),
        "driver_rss_mib": round(own["VmRSS"] / MIB, 1),
        "driver_hwm_mib": round(own.get("VmHWM", 0) / MIB, 1),
        "processes": [{k: round(v, 1) if isinstance(v, float) else v for k, v in p.items()} for p in procs],
    }


class Sampler(threading.Thread):
    """Polls a process tree's memory every ``interval`` s: a time series of the engine
    processes' summed RSS, the largest VmHWM seen per process, the driver's RSS."""

    def __init__(self, owner: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.owner, self.interval = owner, interval
        self.series: list[tuple[float, float, float]] = []  # (time, engine rss MiB, driver rss MiB)
        self.hwm: dict[int, float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            engine = 0.0
            for pid in engine_pids(self.owner):
                st = _status(pid)
                if st:
                    engine += st["VmRSS"] / MIB
                    self.hwm[pid] = max(self.hwm.get(pid, 0.0), st.get("VmHWM", 0) / MIB)
            own = _status(self.owner)
            self.series.append((time.perf_counter(), engine, (own or {}).get("VmRSS", 0) / MIB))
            self._stop_event.wait(self.interval)

    def stop(self) -> "Sampler":
        self._stop_event.set()
        self.join()
        return self

    def peak(self, start: float = float("-inf"), end: float = float("inf")) -> dict[str, float]:
        window = [s for s in self.series if start <= s[0] <= end]
        return {"engine_peak_rss_mib": round(max((s[1] for s in window), default=0.0), 1),
                "driver_peak_rss_mib": round(max((s[2] for s in window), default=0.0), 1)}
