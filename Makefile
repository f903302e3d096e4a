# Fleet Coordinator — developer entry points. `make help` lists them.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV ?= uv
COSMOS_DIR := infra/cosmos-local
# make stress: stops at whichever comes first (see docs/reliability.md)
DURATION ?= 43200
CLAIMS ?= 1000000
STORE ?= sqlite
KILL_EVERY ?= 3

.PHONY: help run demo setup deps py-deps lint format style typecheck test verify generate bench bench-peers stress cosmos-up cosmos-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: py-deps ## run the coordinator on SQLite under ./var (prints the admin token once)
	$(UV) run fleet-coordinator serve --host 127.0.0.1 --port 8787

demo: py-deps ## a coordinator, 3 fleet-agent processes, 500 jobs, one agent killed — live (< 60 s)
	$(UV) run python -m demo

setup: deps ## install Python (uv) and Node (npm) dependencies
deps: py-deps
	cd $(COSMOS_DIR) && npm ci --no-audit --no-fund --loglevel=error
py-deps:
	$(UV) sync --all-packages --frozen

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

generate: py-deps ## rewrite the files derived from code: infra/azure/containers.json, docs/api.md
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

clean: ## remove caches and local state
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis var
