# Every target does its own set-up: a fresh machine needs only python3, Java 17 and Maven.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make test` runs the suite on this many pytest-xdist worker processes (0: serially, in one).
# loadgroup hands tests out one at a time to whichever worker is free, except that the tests of one
# @pytest.mark.xdist_group run on one worker (modules sharing an expensive module-scoped fixture).
PYTEST_WORKERS ?= 2
PYTEST_DIST ?= loadgroup

.PHONY: help install up down status topics lint fmt unit test demo sink bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with pinned dependencies

up: install ## start the local stack (Kafka from Maven Central jars, PostgreSQL); idempotent
	$(BIN)/notify stack up

down: install ## stop what `make up` started
	$(BIN)/notify stack down

status: install ## what is running
	$(BIN)/notify stack status

topics: up ## create/alter every topic to match config, then show them
	$(BIN)/notify topics apply
	$(BIN)/notify topics describe

lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: install ## fast tests that need no servers
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

test: lint up ## the full suite: lint, types, unit and integration tests on the real stack
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) $(PYTEST_ARGS)

demo: install ## the whole pipeline end to end on the local stack, with a readable summary
	$(BIN)/notify demo

sink: up ## run the analytics sink until idle (Parquet under NOTIFY_SINK_OUTPUT)
	$(BIN)/notify topics apply
	$(BIN)/notify sink run --burst

bench: up ## benchmarks with their raw Kafka baselines; figures go to bench-results/
	$(BIN)/notify topics apply
	$(BIN)/notify bench produce
	$(BIN)/notify bench router
	$(BIN)/notify bench delivery
	$(BIN)/notify bench api
	$(BIN)/notify bench sink
	$(BIN)/notify bench observability

clean: down ## stop the stack and remove the virtualenv and caches (not the Maven jars in ~/.m2)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .hypothesis bench-results
