# NUX developer commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# The CPU build of torch; pinned first so nothing pulls a CUDA build.
TORCH := torch==2.13.0
CMAKE_ARGS ?= -DGGML_NATIVE=OFF
export CMAKE_ARGS

.DEFAULT_GOAL := help

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): setup.cfg runtime/setup.cfg exporters/setup.cfg widgets/pyproject.toml widgets/package.json
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e 'runtime[all]' -e '.[test]' -e 'exporters[test]' -e 'widgets[test]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the four distributions installed editable

lint: $(STAMP) ## ruff, mypy, import-linter (imports point one way), ESLint + Prettier on the TypeScript
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	cd widgets && export PATH="$(abspath $(VENV))/bin:$$PATH" && \
		{ test -x node_modules/.bin/eslint || jlpm install --immutable; } && jlpm lint:check

system-deps: ## Install the Debian packages tests need (PostgreSQL, Redis, Chromium)
	bash scripts/system-deps.sh

test: install system-deps lint ## Install, lint and run the whole test suite
	$(VENV)/bin/pytest -q

bench: install ## Run the benchmarks and print the table (see BENCHMARKS.md)
	$(PY) -m benchmarks

fuzz: install ## Property tests with fresh random examples, thousands each
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider tests/kernel/test_compile_properties.py

reliability: install ## Load the served app 60 s at concurrency 16, then kill a stage replica mid-load
	$(PY) -m tests.reliability.serve_load

demo: install ## Run the flagship example end to end on the embedded defaults
	bash examples/rag_qa/demo.sh

lab: install ## Open JupyterLab on the examples, with the NUX extension
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=examples --ServerApp.ip=127.0.0.1

clean: ## Remove caches and build output (keeps .venv)
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name .nux -type d -prune -not -path './.venv/*' -exec rm -rf {} +

.PHONY: help install system-deps lint test fuzz bench reliability demo lab clean
