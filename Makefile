# Every target sets up what it needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
# Every package of ours that mypy checks (inference_service strictly: see pyproject.toml).
PACKAGES := inference_service fraud_core actions monitoring backtest producers console deploy flink_jobs bench faults schemas
PY := $(VENV)/bin/python
# Compiled modules are cached (__pycache__, git-ignored) even where the shell says not to: without
# the cache every process the suite and the demo start compiles the project again (seconds each).
export PYTHONDONTWRITEBYTECODE :=
INSTALLED := $(VENV)/.installed
FETCHED := .stack/lib/.fetched
PROMETHEUS_PKG := .stack/.prometheus-installed
ARGS ?=
# The developer entry points run in local mode; the code has no default (a deployment that forgets
# APP_ENV refuses to start rather than get the development secrets).
export APP_ENV ?= local

.PHONY: help install fetch up down status serve job cluster cluster-down cluster-status consumers console monitor produce import model bench faults backtest retrain demo test unit lint clean

help: ## One line per target
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 needed)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip==25.3
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(INSTALLED) ## Create .venv and install the pinned Python dependencies

DECODER_SOURCES := deploy/maven/decoder/pom.xml $(shell find deploy/maven/decoder/src -name '*.java') schemas/payment_initiated.avsc
$(FETCHED): $(INSTALLED) deploy/maven/pom.xml deploy/local/fetch.py $(DECODER_SOURCES)
	$(PY) -m deploy.local.fetch
	@touch $@

# Debian's prometheus package: promtool for the alert-rule tests, prometheus for the demo. apt-get runs
# only when promtool is missing (and needs root); the stamp records that the check passed once.
$(PROMETHEUS_PKG):
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	  else echo "error: promtool not found; run: sudo apt-get install prometheus"; exit 1; fi; }
	@mkdir -p $(@D) && touch $@

fetch: $(FETCHED) ## Fetch Kafka, the Flink Kafka connector and Apicurio Registry into .stack/lib (once); build the job's JVM decoder

up: $(FETCHED) ## Start the local stack (Kafka KRaft, Apicurio Registry, Redis), create topics, register schemas
	$(PY) -m deploy.local.stack up

down: $(INSTALLED) ## Stop what `make up` started (by PID)
	$(PY) -m deploy.local.stack down

status: $(INSTALLED) ## Show the local stack's services, ports, PIDs and logs
	$(PY) -m deploy.local.stack status

model: $(INSTALLED) ## Train the model on simulated data and make it live (models/)
	$(PY) -m inference_service.training --seed 7 --model-dir models $(ARGS)

serve: $(INSTALLED) ## Run the scoring service in the foreground (trains a model first if none)
	@test -f models/LIVE || $(MAKE) model
	$(PY) -m inference_service $(ARGS)

job: $(FETCHED) ## Run the streaming job in the foreground (mini-cluster; ARGS="--cluster": on `make cluster`)
	$(PY) -m flink_jobs.scoring_job $(ARGS)

cluster: $(FETCHED) ## Start a standalone Flink session cluster (1 JobManager, 2 TaskManagers, UI on :8091)
	$(PY) -m deploy.local.cluster up

cluster-down: $(INSTALLED) ## Stop what `make cluster` started (by PID)
	$(PY) -m deploy.local.cluster down

cluster-status: $(INSTALLED) ## Show the Flink cluster's processes, PIDs and logs
	$(PY) -m deploy.local.cluster status

consumers: $(INSTALLED) ## Run the action consumers in the foreground
	$(PY) -m actions $(ARGS)

console: $(INSTALLED) ## The analyst console (review queue, pipeline health) on :8090
	$(PY) -m console $(ARGS)

monitor: $(INSTALLED) ## Run the drift monitor in the foreground (metrics on :9104; ARGS="--help")
	$(PY) -m monitoring $(ARGS)

produce: $(INSTALLED) ## Produce simulated transactions (make produce ARGS="--help")
	$(PY) -m producers.produce $(ARGS)

import: $(FETCHED) ## Import a labelled history, CSV or Parquet, through a mapping (ARGS="--file F --mapping M.toml")
	$(PY) -m producers.importer $(ARGS)

bench: $(FETCHED) ## End-to-end benchmark: the pipeline against the batched consumer, the naive baseline and the in-process limit (3 trials per load, bisected ceiling) -> bench/results/latest.json + plot
	@test -f models/LIVE || $(MAKE) model
	$(PY) -m bench.e2e $(ARGS)

faults: $(FETCHED) ## Fault suite on a private real stack -> faults/results/latest.json + latest.md (ARGS="--help")
	$(PY) -m faults $(ARGS)

backtest: $(FETCHED) ## Replay a topic range through the scoring logic and write a report (ARGS="--help")
	$(PY) -m backtest $(ARGS)

retrain: $(FETCHED) ## Train a challenger from the topics, backtest it against live, shadow or promote it (ARGS="--help")
	$(PY) -m backtest.retrain $(ARGS)

demo: $(FETCHED) $(PROMETHEUS_PKG) ## The whole pipeline on a generated stream, live view, summary; KEEP_RUNNING=1 keeps it up
	@test -f models/LIVE || $(MAKE) model
	$(PY) -m deploy.local.demo $(ARGS)

# The console's browser test drives Debian's headless Chromium through its chromedriver: installed
# once, only when missing (as root, or through sudo), never downloaded at test time.
CHROMIUM := .stack/.sysdeps-chromium
$(CHROMIUM):
	@mkdir -p $(dir $@)
	@if [ ! -x /usr/bin/chromedriver ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi
	@touch $@

test: $(FETCHED) $(CHROMIUM) $(PROMETHEUS_PKG) ## Lint once, then the whole test suite against real services (starts and stops them itself)
	@$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q --durations=20 $(ARGS)

unit: $(INSTALLED) ## The unit tier alone: pure logic, no process or service started (seconds)
	$(PY) -m pytest -q -n auto --maxprocesses=2 -m "not integration" --durations=5 $(ARGS)

lint: $(INSTALLED) ## ruff check, ruff format --check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(PACKAGES)

clean: ## Remove the virtualenv, fetched artifacts and local state (stop the stack first)
	rm -rf $(VENV) .stack models
