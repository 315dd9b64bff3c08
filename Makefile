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

## Figures -----------------------------------------------------------------------------------
.PHONY: figures
figures: figures-toy figures-bench figures-robustness figures-real figures-real-cnn ## Regenerate every figure in figures/ (full scale)

.PHONY: figures-toy
figures-toy: $(STAMP) ## The toy replication: five trajectory plots and the function GIF
	$(RUN_NOTEBOOK) notebooks/toy_stn.ipynb $(EXECUTED)/toy_stn.ipynb -p output_dir ../figures

.PHONY: figures-bench bench
figures-bench bench: $(STAMP) ## Speed benchmark: figures/speed.png, figures/scaling.png, figures/speed.json
	$(RUN_NOTEBOOK) notebooks/benchmark.ipynb $(EXECUTED)/benchmark.ipynb -p output_dir ../figures \
		-p eager_cycles 30 -p repeats 5 -p max_cycles 10000 -p scaling_seconds 1.0 \
		-p batch_sizes "[100, 1000, 10000]" -p widths "[4, 64, 256]" -p memory_cycles 10000 \
		-p min_speedup 500.0 -p max_us_per_cycle 200.0 -p max_full_run_seconds 10.0 \
		-p max_peak_mib 1024.0

.PHONY: figures-robustness
figures-robustness: $(STAMP) ## Success rates over seeds per variant, failure-mode diagnosis
	$(RUN_NOTEBOOK) notebooks/robustness.ipynb $(EXECUTED)/robustness.ipynb -p output_dir ../figures \
		-p n_seeds 30 -p min_default_rate 0.9

.PHONY: figures-real
figures-real: $(STAMP) ## Real data: STN against grid, random and TPE search on digits
	$(RUN_NOTEBOOK) notebooks/real_data.ipynb $(EXECUTED)/real_data.ipynb -p output_dir ../figures \
		-p seeds "[0, 1, 2]" -p warmup_steps 600 -p stn_cycles 1800 -p trial_steps 6000 \
		-p n_trials 27 -p eval_every 75

.PHONY: figures-real-cnn
figures-real-cnn: $(STAMP) ## Real data with the hyper CNN (one seed, reduced budget): figures/cnn/
	$(RUN_NOTEBOOK) notebooks/real_data.ipynb $(EXECUTED)/real_data_cnn.ipynb \
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
