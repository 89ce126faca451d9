"""One sweep over several engines: ``harness evaluate --workers N`` with Ray.

N Ray actors (:class:`EngineWorker`) each own one engine for their whole life and pull
checkpoints from one queue, in step order; each evaluates its checkpoint exactly as the
single-engine sweep does (in-place reloads, the canary check, the fresh-engine fallback). The
driver alone touches the results folder: it prepares each checkpoint's work (identity,
pending items, prompts, the window check), sends it to a free worker, writes the sample lines
the worker streams back, and writes the checkpoint's summary when its last batch arrives. A
cluster therefore needs no shared filesystem, and the folder's lock, identity and resume rules
hold unchanged.

Faults: a worker that dies (killed process, lost node, engine crash) is restarted by Ray
(``max_restarts``) and its unfinished checkpoint goes back to the front of the queue; the
samples it had returned are on disk and are not computed again. An error raised while a
living worker evaluates a checkpoint (a scoring ``ValueError``, an out-of-memory batch) is
not a death: it uses no restart, the checkpoint is tried again at most ``MAX_ATTEMPTS``
times in all, then recorded as skipped with the error. A checkpoint that fails to load is
recorded as skipped. Ctrl-C stops every worker and leaves a resumable folder.

Resources: on a cluster with GPUs each worker asks for ``tensor_parallel_size ×
pipeline_parallel_size`` GPUs (vLLM's parallelism inside each engine); on CPUs, an equal
share of the CPUs. Without ``ray_address`` a local Ray instance bound to 127.0.0.1 is started
and stopped with the sweep. Each worker's console output (the engine's logs) goes to
``<output>/logs/worker-<i>.log`` unless the harness logs at DEBUG (``-v``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


from harness.backends.api import Backend
from harness.checkpoints import Checkpoint
from harness.checkpoints.sources import CheckpointSource
from harness.console import progress as show_progress, redirect_output
from harness.errors import RunError
from harness.results import SampleRecord
from harness.sweep.config import RunConfig
from harness.sweep.jobs import Job, chunk_size, score_job
from harness.sweep.sweep import Observer, Sweep, load_failed, take_ready

log = logging.getLogger("harness")

#: How many times Ray restarts a worker that died before the sweep gives it up.
MAX_RESTARTS = 3
#: How many times a checkpoint is tried on living workers before it is skipped for its error.
MAX_ATTEMPTS = 2
LOGS = "logs"


class EngineWorker:
    """A Ray actor owning one engine (made from the run's config) for its whole life.

    It rebuilds the run's plan from the config, so the driver sends only which items are
    pending (task, key, modes) and their formatted prompts.
    """

    def __init__(self, config: dict[str, Any], index: int, log_file: str | None, threads: int):
        if log_file:
            redirect_output(log_file)  # this process's and its children's (the engine's) output
        import torch

        from harness.backends import make_backend
        from harness.sweep.plan import plan
        from harness.sweep.sweep import select_tasks

        torch.set_num_threads(threads)
        self.config = RunConfig(**config)
        tasks = select_tasks(self.config)
        self.items = {(item.task.name, item.key): item for item in plan(tasks, self.config)}
        self.task_hashes = {task.name: task.content_hash() for task in tasks}
        self.backend = make_backend(self.config.backend, trust_remote_code=self.config.trust_remote_code,
                                    **self.config.backend_options)
        self.index = index
        print(f"worker {index}: pid {os.getpid()}, engine {self.backend.name}", flush=True)

    def describe(self) -> dict[str, Any]:
        """What the driver checks before sending work: the engine, the task contents, the pid."""
        return {"engine": self.backend.name, "task_hashes": self.task_hashes, "pid": os.getpid()}

    def evaluate(self, checkpoint: dict[str, Any], todo: list[tuple[str, tuple[str, str, str], tuple[str, ...]]],
                 prompts: list[str]):
        """Load ``checkpoint`` and score the pending items, yielding ``("samples", indices,
        records)`` a chunk at a time, then ``("done",)``; ``("failed", why)`` if it does not load."""
        loaded = Checkpoint(**checkpoint)
        try:
            self.backend.load(loaded)
        except Exception as error:  # reported by the driver as a skipped checkpoint
            yield ("failed", load_failed(loaded, error))
            return
        items = [dataclasses.replace(self.items[task, key], modes=tuple(modes)) for task, key, modes in todo]
        for indices, records in score_job(self.backend, items, prompts, chunk_size(self.config)):
            yield ("samples", list(indices), [record.to_dict() for record in records])
        yield ("done", _resident_mib())


def _reason(error: BaseException) -> str:
    """One line naming an error, for the log and the skipped checkpoint's record."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


def _resident_mib() -> float:
    """This process's resident memory (MiB), from /proc where there is one."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return float("nan")
    line = next((line for line in status.read_text().splitlines() if line.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


# --------------------------------------------------------------------------- Ray


def _ray():
    try:
        import ray
    except ImportError:
        raise RunError("workers: --workers needs Ray (pip install ray)") from None
    return ray


def _connect(ray: Any, config: RunConfig, *, verbose: bool) -> bool:
    """Join ``ray_address`` or start a local instance on 127.0.0.1; True when started here."""
    if config.ray_address:
        _probe(config.ray_address)
    if ray.is_initialized():  # the caller's own Ray session
        return False
    if config.ray_address:
        try:
            ray.init(address=config.ray_address, log_to_driver=verbose)
        except Exception as error:  # ConnectionError, and Ray's own types for a bad address
            raise RunError(f"ray_address: cannot reach a Ray cluster at {config.ray_address}: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        return False
    ray.init(num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=verbose)
    return True


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at: Ray itself waits for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise RunError(f"ray_address: cannot reach a Ray cluster at {address} ({error.strerror or error}); "
                       "start one with `ray start --head` or check the address") from None


def _resources(ray: Any, config: RunConfig, workers: int) -> dict[str, float]:
    """What each worker asks Ray for; RunError when the cluster cannot give it."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    if gpus:
        options = {**config.backend_options.get("engine_kwargs", {}), **config.backend_options}
        wanted = int(options.get("tensor_parallel_size") or 1) * int(options.get("pipeline_parallel_size") or 1)
        if wanted > gpus:
            raise RunError(f"workers: each worker asks for {wanted} GPUs (tensor_parallel_size x "
                           f"pipeline_parallel_size) but no node of the cluster has more than {gpus:g}")
        return {"num_gpus": wanted, "num_cpus": 1}
    cpus = sum(node.get("CPU", 0) for node in nodes)
    return {"num_cpus": max(1, int(cpus // workers))}


@dataclass
class _Slot:
    """One worker as the driver sees it: the actor, its thread's inbox, its current job."""

    actor: Any
    inbox: queue.Queue
    job: Job | None = None


def evaluate_on_workers(sweep: Sweep, source: CheckpointSource, backend: Backend, *,
                        observers: Sequence[Observer] = (), progress: bool = True) -> None:
    """Evaluate the checkpoints of ``source`` on ``sweep.config.workers`` Ray actors; the
    driver writes every result into the sweep's folder (module docstring). ``backend`` is an
    engine of the run's kind in this process that loads nothing: it identifies each
    checkpoint and tells its window when the driver prepares its work. ``observers`` are
    called after each checkpoint's summary."""
    config = sweep.config
    ray = _ray()
    verbose = log.isEnabledFor(logging.DEBUG)
    started = _connect(ray, config, verbose=verbose)
    slots: list[_Slot] = []
    try:
        count = config.workers if source.total is None else max(1, min(config.workers, source.total))
        resources = _resources(ray, config, count)
        remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0)(EngineWorker)
        payload = dataclasses.asdict(config)
        logs = None if verbose else sweep.run.path / LOGS
        for index in range(count):
            log_file = None if logs is None else str(logs / f"worker-{index}.log")
            actor = remote.options(**resources).remote(payload, index, log_file, int(resources.get("num_cpus", 1)))
            slots.append(_Slot(actor, queue.Queue()))
        _check_workers(ray, slots, sweep)
        dispatcher = _Dispatcher(ray, sweep, slots, source, backend, observers, progress)
        dispatcher.run()
        sweep.record.workers = [{"worker": index, "resident_mib_after_each_checkpoint": memory}
                                for index, memory in enumerate(dispatcher.memory)]
    finally:
        for slot in slots:
            slot.inbox.put(None)
            ray.kill(slot.actor, no_restart=True)
        if started:
            ray.shutdown()


def _check_workers(ray: Any, slots: Sequence[_Slot], sweep: Sweep) -> None:
    """The workers must run the engine the run records and see the same task contents."""
    for index, described in enumerate(ray.get([slot.actor.describe.remote() for slot in slots])):
        if described["engine"] != sweep.record.engine:
            raise RunError(f"workers: worker {index} runs the {described['engine']} engine, the run "
                           f"{sweep.record.engine}; install the same engines on every node")
        if described["task_hashes"] != sweep.record.task_hashes:
            raise RunError(f"workers: worker {index} builds other task contents than this process "
                           "(another version of the harness or of a task file on its node)")


class _Dispatcher:
    """The driver's loop: jobs out to idle workers, streamed results in, one writer.

    Each worker has a thread that only talks to Ray (sends a job, iterates its streamed
    results into one queue); this thread alone prepares jobs and writes the folder.
    """

    def __init__(self, ray: Any, sweep: Sweep, slots: Sequence[_Slot], source: CheckpointSource,
                 backend: Backend, observers: Sequence[Observer], progress: bool):
        self.ray, self.sweep, self.slots, self.backend = ray, sweep, list(slots), backend
        self.source, self.observers = source, list(observers)
        self.queue: deque[Checkpoint] = deque()
        self.results: queue.Queue = queue.Queue()
        self.total = 0
        self.done = 0
        #: How many times each checkpoint (label) failed with an error on a living worker.
        self.attempts: dict[str, int] = {}
        #: Each worker's resident memory (MiB) after each checkpoint it finished.
        self.memory: list[list[float]] = [[] for _ in slots]
        self.bar = show_progress(0, f"{len(slots)} workers", enabled=progress)

    def run(self) -> None:
        threads = [threading.Thread(target=self._serve, args=(index,), daemon=True) for index in range(len(self.slots))]
        for thread in threads:
            thread.start()
        try:
            self._refill()
            while True:
                self._assign()
                busy = any(slot.job is not None for slot in self.slots)
                if not busy and not self.queue and self.source.finished:
                    return
                try:
                    self._handle(*self.results.get(timeout=max(self.source.poll_seconds, 0.1)))
                except queue.Empty:
                    pass
                if not self.queue and not self.source.finished:
                    self._refill()
        finally:
            self.bar.close()

    def _refill(self) -> None:
        """New checkpoints from the source, identified before any of them is evaluated."""
        ready = take_ready(self.sweep, self.source, self.backend)
        self.queue.extend(ready)
        self.total += len(ready)
        self.bar.total += sum(len(self.sweep.pending(checkpoint)) for checkpoint in ready)
        self.bar.refresh()

    def _assign(self) -> None:
        for index, slot in enumerate(self.slots):
            while slot.job is None and self.queue:
                checkpoint = self.queue.popleft()
                job = self.sweep.prepare(checkpoint, self.backend, load=True)
                if job is None:
                    self._finished(checkpoint, evaluated=not self.sweep.was_skipped(checkpoint))
                    continue
                slot.job = job
                todo = [(item.task.name, item.key, item.modes) for item in job.items]
                slot.inbox.put((dataclasses.asdict(checkpoint), todo, job.prompts))
        self._show()

    def _serve(self, index: int) -> None:
        """A worker's thread: run each job sent to it, pass every streamed message on."""
        slot = self.slots[index]
        while (work := slot.inbox.get()) is not None:
            try:
                for reference in slot.actor.evaluate.options(num_returns="streaming").remote(*work):
                    self.results.put((index, self.ray.get(reference)))
            except self.ray.exceptions.RayActorError as error:  # the process is gone: Ray restarts it
                self.results.put((index, ("died", _reason(error))))
            except self.ray.exceptions.RayTaskError as error:  # the worker lives; the checkpoint failed
                self.results.put((index, ("error", _reason(error.cause or error))))
            except Exception as error:  # anything else from Ray (a lost object, a lost node): a death
                self.results.put((index, ("died", _reason(error))))

    def _handle(self, index: int, message: tuple) -> None:
        slot = self.slots[index]
        job, kind = slot.job, message[0]
        if kind == "samples":
            _, indices, records = message
            self.sweep.write_samples(job, indices, [SampleRecord.from_dict(record) for record in records])
            self.bar.update(len(indices))
            return
        slot.job = None
        if kind == "done":
            self.memory[index].append(round(message[1], 1))
            self._finished(job.checkpoint)
        elif kind == "failed":
            self.sweep.skip(job.checkpoint, message[1])
            self._finished(job.checkpoint, evaluated=False)
        elif kind == "error":
            label = job.checkpoint.label
            self.attempts[label] = self.attempts.get(label, 0) + 1
            if self.attempts[label] >= MAX_ATTEMPTS:
                self.sweep.skip(job.checkpoint, f"evaluation failed {self.attempts[label]} times: {message[1]}")
                self._finished(job.checkpoint, evaluated=False)
            else:
                log.warning("worker %d failed on %s (%s); trying it again (attempt %d of %d)", index, label,
                            message[1], self.attempts[label] + 1, MAX_ATTEMPTS)
                self.queue.appendleft(job.checkpoint)
        else:  # died: what it returned is on disk; the rest goes first in the queue again
            log.warning("worker %d died on %s (%s); Ray restarts it and the checkpoint's remaining work is "
                        "queued again", index, job.checkpoint.label, message[1])
            self.queue.appendleft(job.checkpoint)
            self._wait_until_alive(slot)

    def _wait_until_alive(self, slot: _Slot, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ray.get(slot.actor.describe.remote(), timeout=60)
                return
            except Exception as error:  # still restarting, or dead for good (restarts used up)
                if time.monotonic() > deadline or isinstance(error, self.ray.exceptions.ActorDiedError):
                    raise RunError(f"workers: a worker did not come back after dying ({type(error).__name__}); "
                                   "the folder is resumable: run the same command again") from None
                time.sleep(1.0)

    def _finished(self, checkpoint: Checkpoint, *, evaluated: bool = True) -> None:
        rows = self.sweep.summarise(checkpoint) if evaluated else []
        for observe in self.observers:
            observe(checkpoint, rows)
        self.done += 1
        self._show()

    def _show(self) -> None:
        busy = ", ".join(f"w{i}: {slot.job.checkpoint.label}" for i, slot in enumerate(self.slots) if slot.job)
        self.bar.set_postfix_str(f"{self.done}/{self.total} checkpoints" + (f"; {busy}" if busy else ""))
