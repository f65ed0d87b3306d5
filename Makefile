# morse-exp: `make help` lists the targets.
PYTHON ?= python
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install:  ## install the package and its test tools (pip install -e ".[dev]")
	$(PYTHON) -m pip install -e ".[dev]"

run: install  ## the main job on the embedded default: train Dot, evaluate, write the speedup report
	$(PYTHON) -m morse_exp.main

test: install  ## the fast test suite (what CI runs)
	$(PYTHON) -m pytest -q

test-full: install  ## every test, slow ones included
	$(PYTHON) -m pytest -q -m "slow or not slow"

bench: install  ## speed and memory benchmarks -> outputs/bench/bench.json
	$(PYTHON) -m morse_exp.bench

format:  ## format and lint with ruff
	$(PYTHON) -m pip install -q ruff
	$(PYTHON) -m ruff format src tests benchmarks
	$(PYTHON) -m ruff check --fix src tests benchmarks

.PHONY: help install run test test-full bench format
