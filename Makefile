# morse-exp: `make help` lists the targets.
# Everything runs in the project's own virtual environment, .venv/, created and installed on
# first use; pip runs again only when pyproject.toml changes (the stamp .venv/.installed).
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
STAMP := $(VENV)/.installed
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PYTHON) -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv/ and install the package and its test tools into it (once)

RUN_DIR ?= outputs/main
# make run runs one process at a time, so each may use every core; with another torch job on
# the machine, give each THREADS=1 (two jobs of two threads each slow each other down 4-10x).
THREADS ?= $(shell nproc)
run: install  ## the main job: the shipped 32 px Dash and DDIM Dot vs every-step DDIM, reuse and the oracle Dot
	OMP_NUM_THREADS=$(THREADS) $(PYTHON) -m morse_exp.evaluate experiment=emoji32_main hydra.run.dir=$(RUN_DIR)/emoji32
	@echo "report: $(RUN_DIR)/emoji32/speedup.md and fid_vs_lsd.png"

run-digits: install  ## train a Dot on the 8x8 digits default, evaluate it, write the speedup report
	OMP_NUM_THREADS=$(THREADS) $(PYTHON) -m morse_exp.train hydra.run.dir=$(RUN_DIR)/train
	OMP_NUM_THREADS=$(THREADS) $(PYTHON) -m morse_exp.evaluate dot_checkpoint=$(RUN_DIR)/train/dot \
		hydra.run.dir=$(RUN_DIR)/evaluate
	@echo "report: $(RUN_DIR)/evaluate/speedup.md and fid_vs_lsd.png"

test: lint  ## lint, then the fast test suite (what CI runs)
	$(PYTHON) -m pytest -q

test-full: install  ## every test, slow ones included
	$(PYTHON) -m pytest -q -m "slow or not slow"

bench: install  ## speed and memory benchmarks -> outputs/bench/bench.json
	$(PYTHON) -m morse_exp.bench

lint: install  ## ruff check (the version pinned in pyproject.toml's dev extras) on all the code
	$(PYTHON) -m ruff check src tests benchmarks experiments

.PHONY: help install run run-digits test test-full bench lint
