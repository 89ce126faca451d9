"""Kill `harness evaluate` at many moments — mid-batch, mid-summary, mid-run.json — resume it,
and get exactly what an uninterrupted run gets: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from handmade import run_json
from harness.results import RunDirectory

DATA = Path(__file__).parent / "data"

# Runs the CLI in a fresh process that SIGKILLs itself at the N-th write of one kind, with the
# write half done: an append leaves half a line; a rewrite leaves half a temporary file.
DRIVER = r"""
import os, signal, sys
from pathlib import Path
import harness.io as io
import harness.results.folder as results

kind, nth = os.environ["KILL_AT"].split(":")
nth, seen = int(nth), [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

append, atomic = results.append_jsonl, io.atomic_write_bytes

def appending(path, records):
    seen[0] += kind == "append"
    if kind == "append" and seen[0] == nth:
        text = "".join(io.dumps(r) + "\n" for r in records)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(text[: len(text) // 2])
        die()
    append(path, records)

def rewriting(path, data):
    if Path(path).name == {"summary": "summary.jsonl", "run": "run.json"}.get(kind):
        seen[0] += 1
        if seen[0] == nth:
            Path(path).with_name("." + Path(path).name + ".killed").write_bytes(data[: len(data) // 2])
            die()
    atomic(path, data)

results.append_jsonl, io.atomic_write_bytes = appending, rewriting
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""

# 3 checkpoints x (2 records + 2 x 3 capitals conditions) = 24 appends of one sample (batch 1),
# a summary a checkpoint, run.json at the start, once a checkpoint and at the end.
KILLS = ["append:1", "append:4", "append:8", "append:9", "append:16", "append:23", "append:24",
         "summary:1", "summary:2", "summary:3", "run:1", "run:2", "run:4", "run:5"]


def _evaluate(args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **({"KILL_AT": kill_at} if kill_at else {}))
    command = [sys.executable, "-c", DRIVER, *args] if kill_at else [sys.executable, "-m", "harness.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _state(output: Path) -> tuple[dict, list, dict]:
    run = RunDirectory(output)
    samples = {(label, task): run.read_samples(label, task) for label, task, _ in run.sample_files()}
    record = run_json(run.path)
    kept = {key: record[key] for key in ("task_hashes", "checkpoints", "skipped_checkpoints", "engine")}
    return samples, run.read_summary(), kept


def _lines_per_key(output: Path) -> Counter:
    counts: Counter = Counter()
    for label, task, path in RunDirectory(output).sample_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)  # after a resume, every line parses: the torn fragment is gone
            counts[(label, task, record["id"], record["condition"], record["conjugate"])] += 1
    return counts


@pytest.mark.slow
def test_killed_at_any_moment_and_resumed_equals_an_uninterrupted_run(llama_run, tmp_path):
    def args(output: Path) -> list[str]:
        return ["evaluate", "--checkpoints", str(llama_run), "--tasks", f"{DATA / 'cf_world_facts.json'},capitals",
                "--backend", "hf", "--limit", "2", "--conjugates", "en", "--batch-size", "1", "--output", str(output),
                "--no-report"]

    reference = tmp_path / "reference"
    assert _evaluate(args(reference)).returncode == 0
    expected = _state(reference)
    assert sum(len(s) for s in expected[0].values()) == 24

    def kill_then_resume(kill_at: str) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
        output = tmp_path / kill_at.replace(":", "-")
        killed = _evaluate(args(output), kill_at)
        return output, killed, _evaluate(args(output))

    # Each moment is its own folder and its own processes, which spend most of their time
    # importing torch and transformers on one core: two at a time keep both cores busy.
    with ThreadPoolExecutor(max_workers=min(2, len(os.sched_getaffinity(0)))) as pool:
        outcomes = dict(zip(KILLS, pool.map(kill_then_resume, KILLS)))
    for kill_at, (output, killed, resumed) in outcomes.items():
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-2000:])
        assert resumed.returncode == 0, (kill_at, resumed.stderr[-2000:])
        assert _state(output) == expected, kill_at
        assert set(_lines_per_key(output).values()) == {1}, kill_at  # no sample written twice
