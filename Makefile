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

.PHONY: help install up down status topics lint fmt unit test demo sink bench bench-quick profile clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

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

bench: up ## every stage next to its same-run baseline; the table and bench/results/<date>-<machine>.json
	$(BIN)/notify topics apply
	$(BIN)/notify bench all
	$(BIN)/notify bench observability

bench-quick: up ## the same table with small sizes, in under three minutes (figures to bench-results/)
	$(BIN)/notify topics apply
	$(BIN)/notify bench all --quick

PROFILES := bench-results/profiles
profile: up ## py-spy profiles of the SDK, the router and a worker under their benchmarks; prints the tops
	mkdir -p $(PROFILES)
	$(BIN)/py-spy record --format raw -r 100 -o $(PROFILES)/produce.txt -- $(BIN)/notify bench produce --count 100000 --out $(PROFILES)/produce.json
	$(BIN)/py-spy record --format raw -r 100 -o $(PROFILES)/router.txt -- $(BIN)/notify bench router --count 10000 --out $(PROFILES)/router.json
	$(BIN)/py-spy record --format raw -r 100 -o $(PROFILES)/delivery.txt -- $(BIN)/notify bench delivery --count 3000 --out $(PROFILES)/delivery.json
	$(BIN)/notify profile top $(PROFILES)/produce.txt --within send_batch
	$(BIN)/notify profile top $(PROFILES)/router.txt --within Router.run
	$(BIN)/notify profile top $(PROFILES)/delivery.txt --within Worker.run

clean: down ## stop the stack and remove the virtualenv and caches (not the Maven jars in ~/.m2)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .hypothesis bench-results
