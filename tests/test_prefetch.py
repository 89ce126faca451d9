"""Reading the next checkpoint while this one is scored (harness.checkpoints.prefetch)."""

from __future__ import annotations

import os
import shutil
import threading

import pytest

from harness.checkpoints import Checkpoint
from harness.checkpoints import fingerprints, prefetch
from harness.checkpoints.prefetch import Prefetcher
from harness.results import RunDirectory
from harness.sweep.evaluate import evaluate
from test_resume import config


@pytest.fixture
def hashing_threads(monkeypatch) -> list[tuple[str, str]]:
    """(thread name, file's folder name) of every safetensors file hashed (not read from the cache)."""
    seen: list[tuple[str, str]] = []
    original = fingerprints._safetensors_tensor_hashes

    def recording(stream, size):
        seen.append((threading.current_thread().name, os.path.basename(os.path.dirname(stream.name))))
        return original(stream, size)

    monkeypatch.setattr(fingerprints, "_safetensors_tensor_hashes", recording)
    return seen


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("IFT_HARNESS_CACHE", str(tmp_path / "cache"))


def checkpoint_of(folder) -> Checkpoint:
    return Checkpoint(label=os.path.basename(folder), model=str(folder), step=None)


def test_a_checkpoint_read_ahead_is_hashed_once_on_the_prefetch_thread(llama_run, tmp_path, fresh_cache,
                                                                       hashing_threads):
    folder = shutil.copytree(llama_run / "checkpoint-10", tmp_path / "checkpoint-10")
    with Prefetcher() as prefetcher:
        assert prefetcher.ahead(checkpoint_of(folder))
        assert not prefetcher.ahead(checkpoint_of(folder))  # asked once
        prefetcher.wait(checkpoint_of(folder))
    assert [name.startswith("harness-prefetch") for name, _ in hashing_threads] == [True]
    fingerprints.weights_fingerprint(folder)  # what identifying it does: served by the cache
    assert len(hashing_threads) == 1


def test_nothing_is_read_ahead_when_the_weights_exceed_half_the_memory_available(llama_run, tmp_path, fresh_cache,
                                                                                  hashing_threads, monkeypatch):
    folder = shutil.copytree(llama_run / "checkpoint-10", tmp_path / "checkpoint-10")
    size = (folder / "model.safetensors").stat().st_size
    monkeypatch.setattr(prefetch, "available_memory", lambda: size)  # half of it is less than the weights
    with Prefetcher() as prefetcher:
        assert not prefetcher.ahead(checkpoint_of(folder))
        prefetcher.wait(checkpoint_of(folder))
    assert hashing_threads == []
    monkeypatch.setattr(prefetch, "available_memory", lambda: 4 * size)
    with Prefetcher() as prefetcher:
        assert prefetcher.ahead(checkpoint_of(folder))


def test_a_hub_model_is_not_read_ahead_and_a_failed_reading_is_left_to_identification(llama_run, monkeypatch):
    with Prefetcher() as prefetcher:
        assert not prefetcher.ahead(Checkpoint(label="hub", model="someone/some-model", step=None))

    def failing(folder, kind):
        raise OSError("disk gone")

    monkeypatch.setattr(prefetch, "weights_fingerprint", failing)
    with Prefetcher() as prefetcher:
        checkpoint = checkpoint_of(llama_run / "checkpoint-10")
        assert prefetcher.ahead(checkpoint)
        prefetcher.wait(checkpoint)  # does not raise


def test_sampled_fingerprints_ask_the_kernel_to_read_the_weights_ahead(llama_run, monkeypatch):
    advised = []
    monkeypatch.setattr(prefetch.os, "posix_fadvise", lambda fd, offset, length, advice: advised.append(advice))
    with Prefetcher("sampled") as prefetcher:
        checkpoint = checkpoint_of(llama_run / "checkpoint-10")
        prefetcher.ahead(checkpoint)
        prefetcher.wait(checkpoint)
    weight_files = fingerprints.weight_files(llama_run / "checkpoint-10")
    assert advised == [os.POSIX_FADV_WILLNEED] * len(weight_files)


@pytest.mark.parametrize("prefetching", [True, False])
def test_a_sweep_hashes_each_next_checkpoint_while_the_one_before_is_scored(llama_run, tmp_path, fresh_cache,
                                                                             hashing_threads, prefetching):
    run = shutil.copytree(llama_run, tmp_path / "run")  # files no cache has seen
    output = tmp_path / "results"
    evaluate(config(output, checkpoints=str(run), prefetch=prefetching), progress=False)
    hashed = {folder: name.startswith("harness-prefetch") for name, folder in hashing_threads}
    assert list(hashed) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]  # each once, in turn
    # the first is identified before anything is scored; the others are read while the one before is
    assert hashed == {"checkpoint-10": False, "checkpoint-20": prefetching, "checkpoint-30": prefetching}


def test_reading_ahead_changes_no_number(llama_run, tmp_path):
    values = []
    for prefetching in (True, False):
        output = tmp_path / f"results-{prefetching}"
        evaluate(config(output, checkpoints=str(llama_run), prefetch=prefetching), progress=False)
        values.append(sorted(map(repr, RunDirectory(output).read_summary())))
    assert values[0] == values[1]
