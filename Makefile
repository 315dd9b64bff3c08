# Self-Tuning Networks replication. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0
export TF_ENABLE_ONEDNN_OPTS ?= 0
comma := ,

RUN_NOTEBOOK := $(PYTHON) -m stn.tooling.notebooks
EXECUTED := notebooks/executed

## Environment -------------------------------------------------------------------------------
# requirements.lock pins every package, transitive ones included, that made the committed figures
# (uv pip compile, for CPython $(LOCK_PYTHON) on Linux x86_64). `make install` installs exactly it.
LOCK := requirements.lock
LOCK_PYTHON := 3.11
EXTRAS := experiments,notebook,bench,dev
BOOT_PYTHON ?= $(shell command -v python$(LOCK_PYTHON) || command -v python3)

$(STAMP): $(LOCK) pyproject.toml
	@$(BOOT_PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; \
		sys.exit(None if v == "$(LOCK_PYTHON)" else \
		f"error: BOOT_PYTHON=$(BOOT_PYTHON) is Python {v}; the lock is for $(LOCK_PYTHON)")'
	$(BOOT_PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r $(LOCK)
	$(VENV)/bin/pip install --quiet --no-deps -e .
	$(PYTHON) -m stn.util.environment check $(LOCK)
	$(PYTHON) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

.PHONY: install
install: $(STAMP) ## Create the virtualenv (.venv) with exactly the pinned versions of requirements.lock

.PHONY: lock
lock: | $(STAMP) ## Re-resolve requirements.lock from pyproject.toml (keeps pins that still fit)
	$(VENV)/bin/uv pip compile pyproject.toml $(addprefix --extra ,$(subst $(comma), ,$(EXTRAS))) \
		--python-version $(LOCK_PYTHON) --python-platform x86_64-manylinux_2_28 \
		--custom-compile-command "make lock" --quiet -o $(LOCK)

## Figures ----------------------------------------------------------------------------------
# Each executed notebook is a file target: it reruns when its notebook or anything in stn/
# changes. The runner stages the notebook's outputs and moves them into $(FIGURES) only when
# every cell passed, then writes the executed notebook whole (temporary name, then rename).
# .DELETE_ON_ERROR removes a target whose recipe failed, so nothing half-made looks up to date.
# `make figures` runs every notebook even when one fails, then names the failed ones.
.DELETE_ON_ERROR:
STN_SOURCES := $(shell find stn -name "*.py")
NOTEBOOK_DEPS = notebooks/$(1).ipynb $(STN_SOURCES) | $(STAMP)
# Where results go: `make verify` reruns these rules into a scratch folder.
FIGURES ?= figures
WORK ?= build
PUBLISH = --publish $(FIGURES) --staging $(WORK)/staging
OPTUNA = -p storage sqlite:///../$(WORK)/real_data_optuna.db

# The parameters of the committed figures (a notebook's defaults are its small, fast scale).
# `-p workers 2` deals a seed study's runs, or a search's trials, to two workers (a local Ray
# instance; RAY_ADDRESS sends them to a cluster); no number depends on it.
toy_stn_parameters := -p workers 2
# The population study's sizes. The hyper CNN's stop at 16: evaluating 64 members on the whole
# validation and test sets at once takes gigabytes of memory and minutes to time.
POPULATION_SIZES := [1, 2, 4, 8, 16, 32, 64]
benchmark_parameters := -p eager_cycles 30 -p repeats 5 -p max_cycles 10000 -p scaling_seconds 1.0 \
	-p batch_sizes "[100, 1000, 10000]" -p widths "[4, 64, 256]" -p memory_cycles 10000 \
	-p min_speedup 500.0 -p max_us_per_cycle 1500.0 -p max_full_run_seconds 60.0 \
	-p max_added_mib 512.0 -p population_sizes "$(POPULATION_SIZES)" -p population_cycles 1000 \
	-p mlp_population_sizes "$(POPULATION_SIZES)" -p mlp_population_cycles 250 \
	-p cnn_population_sizes "[1, 2, 4, 8, 16]" -p cnn_population_cycles 50 \
	-p trial_population_sizes "$(POPULATION_SIZES)" -p trial_population_steps 750 \
	-p population_full_members 8 -p population_repeats 3 -p population_workers 2 \
	-p search_trials 27 -p search_steps 6000 \
	-p single_run_variants '["default", "per-layer scale"]'
robustness_parameters := -p n_seeds 30 -p min_default_rate 0.9 -p workers 2
real_data_parameters := -p seeds "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" -p warmup_steps 600 -p stn_cycles 1800 \
	-p trial_steps 6000 -p n_trials 27 -p eval_every_steps 75 -p tpe_batch 2 -p workers 2 \
	-p pbt_population 5 -p pbt_interval_steps 600
# The hyper CNN trained to convergence (figures/cnn/real_data.json: late_improvement checks it).
real_data_cnn_parameters := -p model cnn -p seeds "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" -p warmup_steps 300 \
	-p stn_cycles 1400 -p trial_steps 4500 -p n_trials 8 -p eval_every_steps 75 -p tpe_batch 2 \
	-p workers 2 -p pbt_population 5 -p pbt_interval_steps 450
# The guide runs at its defaults (a minute): the scale nbval checks is the one readers see.
your_model_parameters :=
best_response_parameters := -p variants '["default", "per-unit scale", "delta-stn"]' -p n_seeds 10 \
	-p fixed_scales "[0.25, 0.5, 1.0]" -p fixed_seeds 5 -p toy_cycles 10000 -p toy_points 12 \
	-p toy_seeds 3
PARAMETERS = $($(1)_parameters)

# The benchmark runs alone, since it times the machine; the others then share its cores
# (JOBS at a time). They are deterministic, so running them side by side changes no number.
TIMED_NOTEBOOKS := benchmark
FIGURE_NOTEBOOKS := toy_stn robustness real_data real_data_cnn your_model best_response
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
DRY_RUN = $(findstring n,$(firstword -$(MAKEFLAGS)))

.PHONY: figures
figures: | $(STAMP) ## Regenerate every figure in figures/ (full scale; only what changed)
	@$(MAKE) --no-print-directory $(TIMED_NOTEBOOKS:%=$(EXECUTED)/%.ipynb); \
	$(MAKE) --no-print-directory -k -j$(JOBS) $(FIGURE_NOTEBOOKS:%=$(EXECUTED)/%.ipynb); \
	failed=; for nb in $(if $(DRY_RUN),,$(TIMED_NOTEBOOKS) $(FIGURE_NOTEBOOKS)); do \
		$(MAKE) --no-print-directory -q $(EXECUTED)/$$nb.ipynb || failed="$$failed $$nb"; \
	done; \
	if [ -n "$$failed" ]; then echo "make figures: these notebooks failed:$$failed" >&2; exit 1; fi

.PHONY: figures-toy
figures-toy: $(EXECUTED)/toy_stn.ipynb ## The toy replication: five trajectory plots and the function GIF
$(EXECUTED)/toy_stn.ipynb: $(call NOTEBOOK_DEPS,toy_stn)
	$(RUN_NOTEBOOK) $< $@ $(PUBLISH) $(call PARAMETERS,toy_stn)

.PHONY: figures-bench bench
figures-bench bench: $(EXECUTED)/benchmark.ipynb ## Speed benchmark: figures/speed.png, figures/scaling.png, figures/speed.json
$(EXECUTED)/benchmark.ipynb: $(call NOTEBOOK_DEPS,benchmark)
	$(RUN_NOTEBOOK) $< $@ $(PUBLISH) $(call PARAMETERS,benchmark)

.PHONY: figures-robustness
figures-robustness: $(EXECUTED)/robustness.ipynb ## Success rates over seeds per variant, failure-mode diagnosis
$(EXECUTED)/robustness.ipynb: $(call NOTEBOOK_DEPS,robustness)
	$(RUN_NOTEBOOK) $< $@ $(PUBLISH) $(call PARAMETERS,robustness)

.PHONY: figures-real
figures-real: $(EXECUTED)/real_data.ipynb ## Real data: STN against grid, random and TPE search on digits
$(EXECUTED)/real_data.ipynb: $(call NOTEBOOK_DEPS,real_data)
	$(RUN_NOTEBOOK) $< $@ $(PUBLISH) $(OPTUNA) $(call PARAMETERS,real_data)

.PHONY: figures-real-cnn
figures-real-cnn: $(EXECUTED)/real_data_cnn.ipynb ## Real data with the hyper CNN (10 seeds, trained to convergence): figures/cnn/
$(EXECUTED)/real_data_cnn.ipynb: $(call NOTEBOOK_DEPS,real_data)
	$(RUN_NOTEBOOK) $< $@ --publish $(FIGURES)/cnn --staging $(WORK)/staging $(OPTUNA) \
		$(call PARAMETERS,real_data_cnn)

.PHONY: figures-your-model
figures-your-model: $(EXECUTED)/your_model.ipynb ## The guide: a Keras model made self-tuning; figures/your_model_schedule.png
$(EXECUTED)/your_model.ipynb: $(call NOTEBOOK_DEPS,your_model)
	$(RUN_NOTEBOOK) $< $@ $(PUBLISH) -p checkpoint_dir ../$(WORK)/your_model_checkpoints \
		$(call PARAMETERS,your_model)

.PHONY: figures-best-response
figures-best-response: $(EXECUTED)/best_response.ipynb ## Best response against ground truth: ridge (exact) and the toy (measured)
$(EXECUTED)/best_response.ipynb: $(call NOTEBOOK_DEPS,best_response)
	$(RUN_NOTEBOOK) $< $@ $(PUBLISH) $(call PARAMETERS,best_response)

## Replication check --------------------------------------------------------------------------
# `make verify` reruns every notebook with the rules above into a scratch folder (figures/ stays
# untouched), then compares every number of the committed results files with the rerun's.
VERIFY_DIR := build/verify

.PHONY: verify
verify: | $(STAMP) ## Rerun everything into build/verify; compare each number with figures/*.json
	rm -rf $(VERIFY_DIR)
	-$(MAKE) --no-print-directory figures EXECUTED=$(VERIFY_DIR)/executed \
		FIGURES=$(VERIFY_DIR)/figures WORK=$(VERIFY_DIR)
	$(PYTHON) -m stn.tooling.verify figures $(VERIFY_DIR)/figures --scale full

.PHONY: notebooks-small
notebooks-small: | $(STAMP) ## nbval: every notebook executes at its defaults, writing build/figures
	rm -rf build/figures build/real_data_optuna.db
	$(PYTHON) -m pytest -q --nbval-lax notebooks/*.ipynb

.PHONY: verify-small
verify-small: notebooks-small ## The cheap replication check (in `make test`): build/figures against tests/reference/
	$(PYTHON) -m stn.tooling.verify tests/reference build/figures --scale small

.PHONY: reference-small
reference-small: notebooks-small ## Rewrite tests/reference/ from the notebooks' defaults (after a deliberate change)
	rm -rf tests/reference && mkdir -p tests/reference
	cd build/figures && cp --parents $$(find . -name '*.json') $(CURDIR)/tests/reference/

## Reading ----------------------------------------------------------------------------------
LAB_OPTIONS ?=
# Jupyter refuses to run as root (containers, CI) unless told to.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab
lab: | $(STAMP) ## Open the notebooks in JupyterLab (LAB_OPTIONS="--no-browser --port 8899" to set it up)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT) $(LAB_OPTIONS)

# One self-contained page per executed notebook (nbconvert): its figures are embedded.
HTML ?= build/html

.PHONY: html
html: | $(STAMP) ## Render the executed notebooks to static HTML in build/html (figures embedded), for offline reading
	$(PYTHON) -m stn.tooling.html $(HTML) $(EXECUTED)/*.ipynb

## Checks ------------------------------------------------------------------------------------
.PHONY: test
test: $(STAMP) ## Unit tests, then verify-small: nbval on every notebook and the cheap replication check
	$(PYTHON) -m pytest -q tests
	$(MAKE) --no-print-directory verify-small

.PHONY: readme
readme: | $(STAMP) ## Regenerate README.md's results blocks from figures/*.json
	$(PYTHON) -m stn.tooling.readme README.md --figures figures

.PHONY: lint
lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check stn tests notebooks conftest.py
	$(VENV)/bin/ruff format --check stn tests notebooks conftest.py

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
