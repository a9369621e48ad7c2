# Memory: `make run` starts the service, `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 (CPU) is pinned in pyproject.toml; pip finds it on this machine's disk.
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## Create .venv and install pinned dependencies

# The bench extra on top of setup; redone whenever setup is (pyproject.toml changed).
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

.PHONY: run
run: setup ## Start the service (embedded PostgreSQL unless DATABASE_URL is set) and print the demo keys
	$(BIN)/python -m app serve

.PHONY: status
status: setup ## Print the API URL and demo keys as JSON
	@$(BIN)/python -m app status --json

.PHONY: test
test: setup ## Check the layering and run every test against a real PostgreSQL with pgvector
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

.PHONY: bench
bench: $(BENCH_STAMP) ## Benchmarks: LoCoMo recall and search latency (writes bench/results/)
	$(BIN)/python -m bench

.PHONY: lint
lint: setup ## ruff, mypy and the import contracts
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: fmt
fmt: setup ## Format and autofix
	$(BIN)/ruff format app tests bench
	$(BIN)/ruff check --fix app tests bench

.PHONY: clean
clean: ## Remove the virtualenv and local data (the embedded databases included)
	rm -rf $(VENV) .data bench/.data
