# Developer entry points. `make test` runs every tier; `make test-unit` etc. pick one by marker.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY = $(VENV)/bin/python
PYTEST_ARGS ?=
PYTEST = $(PY) -m pytest -p no:cacheprovider -q -rs $(PYTEST_ARGS)
# Reinstalled when the dependency list changes; `make venv` is a no-op otherwise.
STAMP = $(VENV)/.installed

.PHONY: help venv test test-unit test-integration test-e2e test-faults demo airflow mlflow-ui bench bench-smoke lint clean

help:
	@echo "make venv              create $(VENV) and pip install -e '.[test]'"
	@echo "make test              all tiers (unit, integration, e2e, faults)"
	@echo "make test-unit         -m unit         (SQLite MLflow store, no services)"
	@echo "make test-integration  -m integration  (real mlflow server on PostgreSQL)"
	@echo "make test-e2e          -m e2e          (real Airflow processes)"
	@echo "make test-faults       -m faults       (the real stack under kills, outages; secret grep)"
	@echo "make demo              the retraining pipeline on the embedded MLflow store, with a summary"
	@echo "make airflow           Airflow (standalone) on the demo's home and store: UI on :8080"
	@echo "make mlflow-ui         MLflow's UI on the demo's embedded store: :5000"
	@echo "make bench             every benchmark figure -> bench/results.md and .json (~15 min)"
	@echo "make bench-smoke       the same at small sizes, into bench/out/ (CI; asserts no speed)"
	@echo "make lint              ruff check, if ruff is installed"
	@echo "make clean             remove build and test leftovers (keeps $(VENV))"
	@echo "Extra pytest options: make test PYTEST_ARGS='-x -k tracking'"

venv: $(STAMP)

$(PY):
	@py=$$(command -v python3.11 || command -v python3) || { echo "no python3.11 or python3 on PATH" >&2; exit 1; }; \
	echo "creating $(VENV) with $$py ($$($$py --version))"; \
	$$py -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[test]'
	@# The editable build leaves an egg-info beside the sources; Airflow would then see the
	@# distribution twice and register its plugin twice.
	rm -rf provider/*.egg-info
	@touch $@

# pytest exits 5 when it collects nothing; for us that means tests went missing, so it fails too.
define run_pytest
	@set +e; $(PYTEST) $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests for: $(1)" >&2; exit 1; fi; exit $$rc
endef

test: venv
	$(call run_pytest,tests)

test-unit: venv
	$(call run_pytest,tests -m unit)

test-integration: venv
	$(call run_pytest,tests -m integration)

test-e2e: venv
	$(call run_pytest,tests -m e2e)

test-faults: venv
	$(call run_pytest,tests -m faults)

demo: venv
	$(PY) dags_examples/demo.py

bench: venv
	$(PY) -m bench.run_all

bench-smoke: venv
	$(PY) -m bench.run_all --quick

DEMO_HOME = $(CURDIR)/.airflow

airflow: venv
	AIRFLOW_HOME=$(DEMO_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags_examples \
	AIRFLOW__CORE__LOAD_EXAMPLES=False PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/airflow standalone

mlflow-ui: venv
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(DEMO_HOME)/mlflow/mlflow.db --port 5000

lint:
	@if [ -x $(VENV)/bin/ruff ]; then \
		$(VENV)/bin/ruff check provider tests dags_examples && \
		$(VENV)/bin/ruff format --check provider tests dags_examples; \
	else \
		echo "ruff is not installed in $(VENV); skipping lint ($(PY) -m pip install ruff to enable)"; \
	fi

clean:
	rm -rf build dist provider/*.egg-info .pytest_cache .ruff_cache tests/output bench/out
	find provider tests dags_examples -name __pycache__ -type d -prune -exec rm -rf {} +
