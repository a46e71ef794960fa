# Hookline: `make dev` runs it, `make test` tests it, `make bench` measures it.
PYTHON ?= python3
# make dev PORT=5001 serves the panel on another port.
PORT ?= 5000
# make listen LISTEN_PORT=8766 when 8765 is taken.
LISTEN_PORT ?= 8765
# Test processes: more than the box's cores, since most tests wait on I/O.
TEST_WORKERS ?= 4
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app

.PHONY: dev test test-postgres screenshots bench listen simulate-call flask install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,test,bench]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed

install: $(VENV)/.installed

## Run Redis (embedded), a worker and the panel on http://127.0.0.1:$(PORT)
dev: $(VENV)/.installed
	HOOKLINE_ENV=development $(BIN)/flask dev --port $(PORT)

## Any operator command against the development setup: make flask ARGS="webhook show"
flask: $(VENV)/.installed
	HOOKLINE_ENV=development $(BIN)/flask $(ARGS)

## Run the whole test suite on TEST_WORKERS processes (SQLite, or PostgreSQL when
## HOOKLINE_TEST_DATABASE_URL is set); make test TEST_WORKERS=0 runs it in one process.
## worksteal: a process that runs dry takes half of another's queue, so the long
## tests sorted first do not leave one process working while the rest wait.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

## Refresh the screenshots in docs/ (the browser walks save them there)
screenshots: $(VENV)/.installed-test
	HOOKLINE_SCREENSHOTS=$(CURDIR)/docs $(BIN)/python -m pytest -q -m browser

## make bench BENCH_ARGS="--lines 1-3 --database-url postgresql+psycopg://postgres@127.0.0.1/postgres"
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench $(BENCH_ARGS)

## In another terminal while `make dev` runs: a receiver that verifies signatures
listen: $(VENV)/.installed
	HOOKLINE_ENV=development $(BIN)/flask webhook listen --port $(LISTEN_PORT)

## In another terminal while `make dev` runs: publish a whole simulated call
simulate-call: $(VENV)/.installed
	HOOKLINE_ENV=development $(BIN)/flask simulate-call

clean:
	rm -rf $(VENV) .pytest_cache
