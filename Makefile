# Tessera: `make run` then `make test`. Everything installs from PyPI into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.9

export PATH := $(BIN):$(PATH)
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export UV_COMPILE_BYTECODE := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/data/mlflow.db
export MLFLOW_TRACKING_URI

MANIFEST := dbt_project/target/manifest.json
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DBT_SOURCES := $(shell find dbt_project -path dbt_project/target -prune -o \( -name '*.sql' -o -name '*.yml' \) -print)

.PHONY: help install install-dev run test test-quick lint browser-deps services-deps services-up services-down ui mlflow-ui api generate check-config example-online-retail clean
help:
	@echo "make run        install, write sample data if the landing zone is empty, materialise every asset"
	@echo "make test       the whole test suite"
	@echo "make lint       ruff check and ruff format --check (rules in pyproject.toml)"
	@echo "make ui         Dagster UI on http://127.0.0.1:3000"
	@echo "make mlflow-ui  MLflow UI on http://127.0.0.1:5000"
	@echo "make api        lookup API on http://127.0.0.1:8000 (set TESSERA_API_TOKEN; OpenAPI at /docs)"
	@echo "make services-up  start PostgreSQL, an MLflow server on it and a Spark cluster (PIDs in data/services/)"
	@echo "make services-down stop exactly those PIDs"
	@echo "make check-config          validate TESSERA_SOURCES_CONFIG and segments/ without running anything"
	@echo "make example-online-retail the whole pipeline on UCI Online Retail (docs/examples/online_retail.md)"

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Running needs requirements.lock; the tests add the dev, Spark and production extras
# (requirements-dev.lock, the same pins plus those).
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements-dev.lock
	@touch $@

$(MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	cd dbt_project && $(BIN)/dbt parse --profiles-dir . --quiet
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: $(VENV)/.installed orchestration/cli.py
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -c 'from pathlib import Path; from orchestration.cli import ensure_dagster_home; ensure_dagster_home(Path("$(DAGSTER_HOME)"))'

run: $(MANIFEST) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/tessera run

# Two workers, each taking whole test files, so module fixtures still run once.
test: $(VENV)/.installed-dev $(MANIFEST) $(DAGSTER_HOME)/dagster.yaml browser-deps services-deps
	$(BIN)/pytest -n 2 --dist loadfile

# ruff's rules are in pyproject.toml; .ci/run lints before it tests. `ruff format .` fixes the layout.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-quick: $(VENV)/.installed-dev $(MANIFEST)
	$(BIN)/pytest -m "not slow and not browser and not services"

# The browser tests drive Debian's Chromium with Playwright (no browser download).
browser-deps: /usr/bin/chromium
/usr/bin/chromium:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# The production profile's PostgreSQL, the Spark cluster's Java and the real-time path's Redis, from Debian's packages.
services-deps: /usr/lib/postgresql/15/bin/postgres /usr/bin/java /usr/bin/redis-server
/usr/lib/postgresql/15/bin/postgres:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15
/usr/bin/java:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless
# The package starts a system Redis on 6379; Tessera starts its own (tessera services up redis).
/usr/bin/redis-server:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server

services-up: $(VENV)/.installed-dev $(MANIFEST) services-deps
	$(BIN)/tessera services up

services-down:
	$(BIN)/tessera services down

generate: $(VENV)/.installed
	$(BIN)/tessera generate --persons 2000 --out data/landing

ui: $(MANIFEST) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

mlflow-ui: $(VENV)/.installed
	@mkdir -p data
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000 --workers 1

api: $(VENV)/.installed
	$(BIN)/tessera api --host 127.0.0.1 --port 8000

check-config: $(MANIFEST)
	$(BIN)/tessera check-config

# The real-data walkthrough: its own landing folder (for erasure requests), warehouse and MLflow store.
EXAMPLE_DIR := $(CURDIR)/data/examples/online_retail
example-online-retail: $(MANIFEST) $(DAGSTER_HOME)/dagster.yaml
	@mkdir -p $(EXAMPLE_DIR)/landing
	TESSERA_SOURCES_CONFIG=$(CURDIR)/examples/online_retail/sources.yml TESSERA_LANDING_DIR=$(EXAMPLE_DIR)/landing \
	TESSERA_WAREHOUSE=$(EXAMPLE_DIR)/warehouse.duckdb TESSERA_EXPORTS_DIR=$(EXAMPLE_DIR)/exports \
	MLFLOW_TRACKING_URI=sqlite:///$(EXAMPLE_DIR)/mlflow.db $(BIN)/tessera run

clean:
	rm -rf data dbt_project/target dbt_project/logs
