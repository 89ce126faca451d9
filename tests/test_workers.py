"""One sweep over several engines (``--workers``): the same results as one engine, faults
survived, resumes, and bad settings refused before anything is loaded.

The sweeps run on a local 2-CPU Ray cluster bound to 127.0.0.1, with the transformers engine
on tiny checkpoints; batches of one example keep each sample's numbers independent of which
worker scored it alongside what.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handmade import run_json
from harness.errors import RunError
from harness.results import RunDirectory
from harness.sweep.config import RunConfig
from harness.sweep import workers
from harness.sweep.evaluate import evaluate
from harness.sweep.workers import EngineWorker

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def four_checkpoints(make_checkpoint_run) -> Path:
    return make_checkpoint_run("four", steps=(10, 20, 30, 40))


def config(run: Path, output: Path, **overrides) -> RunConfig:
    settings = dict(output=str(output), checkpoints=str(run), tasks=["capitals", str(DATA / "cf_world_facts.json")],
                    backend="hf", limit=2, conjugates=["en"], batch_size=1, bootstrap_resamples=50)
    settings.update(overrides)
    return RunConfig(**settings)


def _results(output: Path) -> tuple[dict, list]:
    run = RunDirectory(output)
    samples = {(label, task): [sample.to_dict() for sample in run.read_samples(label, task)]
               for label, task, _ in run.sample_files()}
    rows = sorted(run.read_summary(), key=lambda row: (row.checkpoint, row.task, row.condition, row.mode, row.metric))
    return samples, [row.to_dict() for row in rows]


def _same(first: object, second: object) -> bool:
    """Equal, floats within 1e-5: engines in processes with other thread counts sum in
    another order (outputs, decisions and counts must be identical)."""
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(_same(first[k], second[k]) for k in first)
    if isinstance(first, (list, tuple)) and isinstance(second, (list, tuple)):
        return len(first) == len(second) and all(_same(a, b) for a, b in zip(first, second))
    if isinstance(first, float) and isinstance(second, float):
        return first == pytest.approx(second, abs=1e-5)
    return first == second


# Runs first: its sweep starts a Ray instance of its own, before the module's cluster exists.
def test_a_killed_worker_is_restarted_and_nothing_is_lost_or_duplicated(four_checkpoints, tmp_path):
    reference = tmp_path / "reference"
    evaluate(config(four_checkpoints, reference), progress=False)
    output = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "evaluate", "--checkpoints", str(four_checkpoints), "--tasks",
         f"capitals,{DATA / 'cf_world_facts.json'}", "--backend", "hf", "--limit", "2", "--conjugates", "en",
         "--batch-size", "1", "--workers", "2", "--output", str(output), "--no-report"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = output / "logs" / "worker-0.log"
    deadline = time.time() + 300
    pid = None
    while time.time() < deadline and process.poll() is None:
        found = re.search(r"worker 0: pid (\d+)", log.read_text()) if log.is_file() else None
        # Kill it once it is mid-sweep: some samples written, the sweep not finished.
        if found and any(RunDirectory(output).sample_files()):
            pid = int(found.group(1))
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    if pid is None:
        process.kill()
        pytest.fail(f"the sweep never got going: {process.communicate()[1][-3000:]}")
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert _same(_results(output), _results(reference))
    for _, _, path in RunDirectory(output).sample_files():
        keys = [line for line in path.read_text().splitlines() if line.strip()]
        assert len(keys) == len(set(keys))  # no sample written twice (torn fragments aside)


def test_two_workers_give_what_one_gives(ray_cluster, four_checkpoints, tmp_path):
    evaluate(config(four_checkpoints, tmp_path / "one", workers=1), progress=False)
    evaluate(config(four_checkpoints, tmp_path / "two", workers=2), progress=False)
    evaluate(config(four_checkpoints, tmp_path / "local"), progress=False)
    one, two = _results(tmp_path / "one"), _results(tmp_path / "two")
    assert _same(one, two) and len(one[0]) == 8
    assert _same(one, _results(tmp_path / "local"))  # and what the single-engine sweep gives
    record = run_json(tmp_path / "two")
    assert record["engine"] == "hf" and [e["label"] for e in record["checkpoints"]] == [
        "checkpoint-10", "checkpoint-20", "checkpoint-30", "checkpoint-40"]
    logs = sorted((tmp_path / "two" / "logs").glob("worker-*.log"))
    assert [p.name for p in logs] == ["worker-0.log", "worker-1.log"]


def test_more_workers_than_checkpoints(ray_cluster, make_checkpoint_run, tmp_path):
    run = make_checkpoint_run("pair", steps=(10, 20))
    evaluate(config(run, tmp_path / "out", workers=3), progress=False)
    assert {row.checkpoint for row in RunDirectory(tmp_path / "out").read_summary()} == {"checkpoint-10",
                                                                                       "checkpoint-20"}


def test_a_resumed_sweep_does_only_the_missing_work(ray_cluster, four_checkpoints, tmp_path):
    output = tmp_path / "out"
    evaluate(config(four_checkpoints, output, workers=2), progress=False)
    run = RunDirectory(output)
    before = {path: path.read_bytes() for _, _, path in run.sample_files()}
    missing = run.samples_file("checkpoint-30", "capitals")
    missing.unlink()
    evaluate(config(four_checkpoints, output, workers=2), progress=False)
    after = {path: path.read_bytes() for _, _, path in run.sample_files()}
    assert after.keys() == before.keys()
    assert all(after[p] == before[p] for p in before if p != missing)  # untouched: not appended to
    assert len(run.read_samples("checkpoint-30", "capitals")) == 6


class FailingWorker(EngineWorker):
    """A worker whose scoring raises on checkpoint-20 (as a scoring bug or an out-of-memory
    batch would), counting the attempts in a file; its process stays alive."""

    def evaluate(self, checkpoint, todo, prompts):
        if checkpoint["label"] == "checkpoint-20":
            with open(Path(self.config.output) / "attempts", "a") as stream:
                stream.write(f"{os.getpid()}\n")
            raise ValueError("no score for this output")
        yield from super().evaluate(checkpoint, todo, prompts)


def test_a_task_error_is_retried_then_skipped_without_a_restart(ray_cluster, four_checkpoints, tmp_path, monkeypatch):
    # The stand-in lives in this test module, which the workers cannot import: send it whole.
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(workers, "EngineWorker", FailingWorker)
    output = tmp_path / "out"
    evaluate(config(four_checkpoints, output, workers=1), progress=False)
    record = run_json(output)
    assert list(record["skipped_checkpoints"]) == ["checkpoint-20"]
    assert "failed 2 times: ValueError: no score for this output" in record["skipped_checkpoints"]["checkpoint-20"]
    attempts = (output / "attempts").read_text().split()
    assert len(attempts) == workers.MAX_ATTEMPTS and len(set(attempts)) == 1  # one process: no restart
    summarised = {row.checkpoint for row in RunDirectory(output).read_summary()}
    assert summarised == {"checkpoint-10", "checkpoint-30", "checkpoint-40"}


def test_bad_worker_settings_are_refused_before_anything_is_loaded(four_checkpoints, tmp_path):
    with pytest.raises(RunError, match="workers: must be at least 1"):
        evaluate(config(four_checkpoints, tmp_path / "zero", workers=0), progress=False)
    start = time.perf_counter()
    with pytest.raises(RunError, match="cannot reach a Ray cluster at 127.0.0.1:9"):
        evaluate(config(four_checkpoints, tmp_path / "away", workers=2, ray_address="127.0.0.1:9"), progress=False)
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "away" / "samples").exists()


def test_more_gpus_per_worker_than_the_cluster_has_is_refused():
    from harness.sweep.workers import _resources

    class Cluster:
        @staticmethod
        def nodes():
            return [{"Alive": True, "Resources": {"CPU": 16, "GPU": 4}}]

    needs_eight = RunConfig(workers=2, backend_options={"tensor_parallel_size": 4,
                                                        "engine_kwargs": {"pipeline_parallel_size": 2}})
    with pytest.raises(RunError, match="asks for 8 GPUs .* no node of the cluster has more than 4"):
        _resources(Cluster, needs_eight, 2)
    assert _resources(Cluster, RunConfig(workers=2, backend_options={"tensor_parallel_size": 2}), 2) == {
        "num_gpus": 2, "num_cpus": 1}
