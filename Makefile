# Self-Tuning Networks replication. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0
export TF_ENABLE_ONEDNN_OPTS ?= 0

RUN_NOTEBOOK := $(PYTHON) -m stn.notebooks
EXECUTED := notebooks/executed

## Environment -------------------------------------------------------------------------------
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(PYTHON) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

.PHONY: install
install: $(STAMP) ## Create the virtualenv (.venv) and install stn with its dev extra

## Figures ----------------------------------------------------------------------------------
# Each executed notebook is a file target: it reruns when its notebook or anything in stn/
# changes, and the runner writes it (and every figure) to a temporary name, then renames it.
# .DELETE_ON_ERROR removes a target whose recipe failed, so nothing half-made looks up to date.
.DELETE_ON_ERROR:
STN_SOURCES := $(wildcard stn/*.py)
NOTEBOOK_DEPS = notebooks/$(1).ipynb $(STN_SOURCES) | $(STAMP)

.PHONY: figures
figures: figures-toy figures-bench figures-robustness figures-real figures-real-cnn ## Regenerate every figure in figures/ (full scale; only what changed)

.PHONY: figures-toy
figures-toy: $(EXECUTED)/toy_stn.ipynb ## The toy replication: five trajectory plots and the function GIF
$(EXECUTED)/toy_stn.ipynb: $(call NOTEBOOK_DEPS,toy_stn)
	$(RUN_NOTEBOOK) $< $@ -p output_dir ../figures

.PHONY: figures-bench bench
figures-bench bench: $(EXECUTED)/benchmark.ipynb ## Speed benchmark: figures/speed.png, figures/scaling.png, figures/speed.json
$(EXECUTED)/benchmark.ipynb: $(call NOTEBOOK_DEPS,benchmark)
	$(RUN_NOTEBOOK) $< $@ -p output_dir ../figures \
		-p eager_cycles 30 -p repeats 5 -p max_cycles 10000 -p scaling_seconds 1.0 \
		-p batch_sizes "[100, 1000, 10000]" -p widths "[4, 64, 256]" -p memory_cycles 10000 \
		-p min_speedup 500.0 -p max_us_per_cycle 200.0 -p max_full_run_seconds 10.0 \
		-p max_peak_mib 1024.0

.PHONY: figures-robustness
figures-robustness: $(EXECUTED)/robustness.ipynb ## Success rates over seeds per variant, failure-mode diagnosis
$(EXECUTED)/robustness.ipynb: $(call NOTEBOOK_DEPS,robustness)
	$(RUN_NOTEBOOK) $< $@ -p output_dir ../figures -p n_seeds 30 -p min_default_rate 0.9

.PHONY: figures-real
figures-real: $(EXECUTED)/real_data.ipynb ## Real data: STN against grid, random and TPE search on digits
$(EXECUTED)/real_data.ipynb: $(call NOTEBOOK_DEPS,real_data)
	$(RUN_NOTEBOOK) $< $@ -p output_dir ../figures \
		-p seeds "[0, 1, 2]" -p warmup_steps 600 -p stn_cycles 1800 -p trial_steps 6000 \
		-p n_trials 27 -p eval_every 75

.PHONY: figures-real-cnn
figures-real-cnn: $(EXECUTED)/real_data_cnn.ipynb ## Real data with the hyper CNN (one seed, reduced budget): figures/cnn/
$(EXECUTED)/real_data_cnn.ipynb: $(call NOTEBOOK_DEPS,real_data)
	$(RUN_NOTEBOOK) $< $@ \
		-p output_dir ../figures/cnn -p model cnn -p seeds "[0]" -p warmup_steps 150 \
		-p stn_cycles 450 -p trial_steps 1500 -p n_trials 8 -p eval_every 75

## Checks ------------------------------------------------------------------------------------
.PHONY: test
test: $(STAMP) ## Unit tests, then nbval: every notebook executes with its default parameters
	$(PYTHON) -m pytest -q tests
	$(PYTHON) -m pytest -q --nbval-lax notebooks/*.ipynb

.PHONY: lint
lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check stn tests notebooks
	$(VENV)/bin/ruff format --check stn tests notebooks

.PHONY: format
format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix stn tests notebooks
	$(VENV)/bin/ruff format stn tests notebooks

.PHONY: clean
clean: ## Remove the virtualenv and build outputs
	rm -rf $(VENV) build .pytest_cache

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_ -]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'
