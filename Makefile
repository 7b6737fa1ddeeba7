# Kindred — the project's verbs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install run test lint format migrate bench load fuzz clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## set up .venv from pyproject.toml + constraints.txt (quick when nothing changed)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

run: install ## migrate, seed demo data on first run, and serve the API on HOST:PORT (default 127.0.0.1:8000)
	@$(BIN)/kindred migrate
	@$(BIN)/kindred seed-demo --if-empty --users 300
	@exec $(BIN)/kindred serve

test: install ## run the whole suite (embedded stack, or PostgreSQL/Redis via TEST_DATABASE_URL/TEST_REDIS_URL)
	@$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy
	@$(BIN)/ruff check src tests bench
	@$(BIN)/ruff format --check src tests bench
	@$(BIN)/mypy src bench

format: install ## apply ruff's fixes and formatting
	@$(BIN)/ruff check --fix src tests bench
	@$(BIN)/ruff format src tests bench

migrate: install ## upgrade the configured database to the latest schema
	@$(BIN)/kindred migrate

bench: install ## benchmarks against PostgreSQL + Redis, printed as ratios (see docs/performance.md)
	@bash bench/run.sh

clean: ## remove the venv and local data under var/
	rm -rf $(VENV) var
