# Hookline: `make dev` runs it, `make test` tests it, `make bench` measures it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app

.PHONY: dev test test-postgres bench listen simulate-call install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed

install: $(VENV)/.installed

## Run Redis (embedded), a worker and the panel on http://127.0.0.1:5000
dev: $(VENV)/.installed
	HOOKLINE_ENV=development $(BIN)/flask dev

## Run the whole test suite (SQLite; PostgreSQL too when HOOKLINE_TEST_DATABASE_URL is set)
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench

## In another terminal while `make dev` runs: a receiver that verifies signatures
listen: $(VENV)/.installed
	HOOKLINE_ENV=development $(BIN)/flask webhook listen

## In another terminal while `make dev` runs: publish a whole simulated call
simulate-call: $(VENV)/.installed
	HOOKLINE_ENV=development $(BIN)/flask simulate-call

clean:
	rm -rf $(VENV) .pytest_cache
