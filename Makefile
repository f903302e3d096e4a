# Fleet Coordinator — developer entry points. `make help` lists them.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
COSMOS_DIR := infra/cosmos-local
# uv: the one on PATH, else a pinned copy that `make` installs from PyPI with pip into
# .tools/ (a plain venv; pip honours the machine's pip configuration and index).
UV_VERSION := 0.9.30
TOOLS := $(CURDIR)/.tools
UV ?= $(or $(shell command -v uv 2>/dev/null),$(TOOLS)/bin/uv)
# Tests and tools started under `uv run` find that uv (and nothing else of .tools) on PATH.
export PATH := $(TOOLS)/bin:$(PATH)
# apt-get as root, or through sudo; used only for what a bare machine lacks.
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo )apt-get
# make stress: stops at whichever comes first (see docs/reliability.md)
DURATION ?= 43200
CLAIMS ?= 1000000
STORE ?= sqlite
KILL_EVERY ?= 3
# The console's vendored htmx (services/coordinator/.../console/static); `make vendor-htmx` refreshes it.
HTMX_VERSION := 2.0.11

.PHONY: help run demo setup deps py-deps node-deps tools browser vendor-htmx lint format style typecheck test verify generate bench bench-peers stress cosmos-up cosmos-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: py-deps ## run the coordinator on SQLite under ./var (prints the admin token once)
	$(UV) run fleet-coordinator serve --host 127.0.0.1 --port 8787

demo: py-deps ## a coordinator, 3 fleet-agent processes, 500 jobs, one agent killed — live (< 60 s)
	$(UV) run python -m demo

setup: deps ## install Python (uv), Node (npm) and browser-test (Chromium) dependencies; uv and Node too when missing
deps: py-deps node-deps browser
# The console's browser tests drive Debian's headless Chromium; installed only when missing.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		echo "make: chromium or chromedriver is missing; installing chromium and chromium-driver from Debian"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	fi
vendor-htmx: ## refresh the console's vendored htmx from the npm registry (HTMX_VERSION)
	services/coordinator/scripts/vendor-htmx.sh $(HTMX_VERSION)
# Bytecode compiled once here, for the installed packages and the workspace's own: a
# machine with PYTHONDONTWRITEBYTECODE set (CI's) otherwise compiles every import in
# every process it starts — 0.45 s instead of 0.17 s of CPU for an agent's start-up.
py-deps: tools
	$(UV) sync --all-packages --frozen --compile-bytecode
	$(UV) run --no-sync python -m compileall -q -j 0 services packages >/dev/null
node-deps:
	@command -v npm >/dev/null 2>&1 || { echo "make: npm is not on PATH; installing nodejs and npm from Debian"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq nodejs npm >/dev/null; }
	cd $(COSMOS_DIR) && npm ci --no-audit --no-fund --loglevel=error

tools: ## install uv (the version the Makefile pins) into .tools/ (from PyPI, with pip) if no uv is on PATH
	@command -v $(UV) >/dev/null 2>&1 || $(MAKE) --no-print-directory $(TOOLS)/bin/uv

$(TOOLS)/bin/uv:
	@echo "make: uv is not on PATH; installing uv $(UV_VERSION) from PyPI into .tools/"
	@python3 -m venv $(TOOLS)/uv >/dev/null 2>&1 || { rm -rf $(TOOLS)/uv; \
	  echo "make: python3 cannot create a venv; installing python3-venv from Debian"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq python3-venv >/dev/null && python3 -m venv $(TOOLS)/uv; }
	$(TOOLS)/uv/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	mkdir -p $(TOOLS)/bin && ln -sf ../uv/bin/uv $(TOOLS)/bin/uv

lint: ## ruff lint + format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

format: ## apply ruff formatting and autofixes
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

typecheck: ## mypy --strict
	$(UV) run mypy

style: lint typecheck ## lint, format check and type check

test: ## all tests (the Cosmos-protocol server is started by the fixtures)
	$(UV) run pytest -q

verify: setup style test ## what CI runs: setup, lint, format check, mypy strict, all tests

generate: py-deps ## rewrite the files derived from code: infra/azure/containers.json, docs/api.md, the settings table of docs/operations.md
	$(UV) run python -m fleet_coordinator.generate

bench: setup ## benchmarks; prints ratios measured in one run
	$(UV) run python -m bench

bench-peers: py-deps ## this coordinator beside Celery, RQ and procrastinate (PEERS_ARGS="--jobs 500 --reps 1")
	UV=$(UV) $(UV) run python -m bench.peers $(PEERS_ARGS)

stress: setup ## long chaos run over 3 real replicas (DURATION=s CLAIMS=n STORE=sqlite|cosmos KILL_EVERY=s)
	$(UV) run python -m tests.stress --duration $(DURATION) --claims $(CLAIMS) --store $(STORE) --kill-every $(KILL_EVERY)

cosmos-up: ## start the local Cosmos-protocol server in the background (see docs/datastore.md)
	$(COSMOS_DIR)/cosmos-local up

cosmos-down: ## stop it
	$(COSMOS_DIR)/cosmos-local down

clean: ## remove caches and local state (not .tools: the uv make installed)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis var
