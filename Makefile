# Developer entry points. `make test` runs every test (make lint, then every tier); `make test-unit`
# etc. pick one tier by marker.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY = $(VENV)/bin/python
PYTEST_ARGS ?=
PYTEST = $(PY) -m pytest -p no:cacheprovider -q -rs $(PYTEST_ARGS)
# Reinstalled when the dependency list changes; `make venv` is a no-op otherwise.
STAMP = $(VENV)/.installed
# What the demo and `make airflow` need ([examples]: scikit-learn, pandas, skops, matplotlib), and
# `make mlflow-ui` ([server]: full mlflow); `make venv`'s [test] install includes both.
DEMO_STAMP = $(VENV)/.installed-examples
SERVER_STAMP = $(VENV)/.installed-server

.PHONY: help venv test test-unit test-integration test-e2e test-faults demo airflow mlflow-ui bench bench-smoke lint clean

help:
	@echo "make venv              create $(VENV) and pip install -e '.[test]'"
	@echo "make test              every test: make lint, then all tiers (unit, integration, e2e, faults)"
	@echo "make test-unit         -m unit         (SQLite MLflow store, no services)"
	@echo "make test-integration  -m integration  (real mlflow server on PostgreSQL)"
	@echo "make test-e2e          -m e2e          (real Airflow processes)"
	@echo "make test-faults       -m faults       (the real stack under kills, outages; secret grep)"
	@echo "make demo              the retraining pipeline on the embedded MLflow store, with a summary"
	@echo "make airflow           Airflow (standalone) on the demo's home and store: UI on :8080"
	@echo "make mlflow-ui         MLflow's UI on the demo's embedded store: :5000"
	@echo "make bench             every benchmark figure -> bench/results.md and .json (~35 min)"
	@echo "make bench-smoke       the same at small sizes, into bench/out/ (CI; asserts no speed)"
	@echo "make lint              ruff check and format, and static checks of docker/ (tests/lint)"
	@echo "make clean             remove build and test leftovers (keeps $(VENV))"
	@echo "Extra pytest options: make test PYTEST_ARGS='-x -k tracking'"

venv: $(STAMP)

$(PY):
	@py=$$(command -v python3.11 || command -v python3) || { echo "no python3.11 or python3 on PATH" >&2; exit 1; }; \
	echo "creating $(VENV) with $$py ($$($$py --version))"; \
	$$py -m venv $(VENV)

# $(call install,EXTRAS): pip install -e '.[EXTRAS]' into $(VENV). The editable build leaves an
# egg-info beside the sources; Airflow would then see the distribution twice and register its
# plugin twice, so it goes.
install = $(PY) -m pip install --quiet --upgrade pip && \
	$(PY) -m pip install --progress-bar off -e '.[$(1)]' && rm -rf provider/*.egg-info

$(STAMP): pyproject.toml | $(PY)
	$(call install,test)
	@touch $@

# An up-to-date [test] install holds every extra: nothing to install then.
$(DEMO_STAMP): pyproject.toml | $(PY)
	@if [ $(STAMP) -nt pyproject.toml ]; then echo "$(VENV) has [test], which includes [examples]"; \
	else set -x; $(call install,examples); fi
	@touch $@

$(SERVER_STAMP): pyproject.toml | $(PY)
	@if [ $(STAMP) -nt pyproject.toml ]; then echo "$(VENV) has [test], which includes [server]"; \
	else set -x; $(call install,server); fi
	@touch $@

# pytest exits 5 when it collects nothing; for us that means tests went missing, so it fails too.
define run_pytest_with
	@set +e; $(1) $(2); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests for: $(2)" >&2; exit 1; fi; exit $$rc
endef
run_pytest = $(call run_pytest_with,$(PYTEST),$(1))

# Every test: the lint tier (with ruff) first, then the four tiers.
test: lint
	$(call run_pytest,tests --ignore=tests/lint)

test-unit: venv
	$(call run_pytest,tests -m unit)

test-integration: venv
	$(call run_pytest,tests -m integration)

test-e2e: venv
	$(call run_pytest,tests -m e2e)

test-faults: venv
	$(call run_pytest,tests -m faults)

demo: $(DEMO_STAMP)
	$(PY) dags_examples/demo.py

bench: venv
	$(PY) -m bench.run_all

bench-smoke: venv
	$(PY) -m bench.run_all --quick

DEMO_HOME = $(CURDIR)/.airflow

airflow: $(DEMO_STAMP)
	AIRFLOW_HOME=$(DEMO_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags_examples \
	AIRFLOW__CORE__LOAD_EXAMPLES=False PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/airflow standalone

mlflow-ui: $(SERVER_STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(DEMO_HOME)/mlflow/mlflow.db --port 5000

# ruff, and the lint tier: static checks of repository files (tests/lint/, e.g. docker/). Its own
# pytest call: PYTEST_ARGS (a -k for one tier, say) are for `make test`'s tiers.
lint: venv
	$(VENV)/bin/ruff check provider tests dags_examples
	$(VENV)/bin/ruff format --check provider tests dags_examples
	$(call run_pytest_with,$(PY) -m pytest -p no:cacheprovider -q -rs,tests/lint)

clean:
	rm -rf build dist provider/*.egg-info .pytest_cache .ruff_cache tests/output bench/out
	find provider tests dags_examples -name __pycache__ -type d -prune -exec rm -rf {} +
