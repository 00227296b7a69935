# One entry point for users and CI. `make install` is idempotent and quick when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-live test-all lint demo clean bench bench-full bench-deps

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]"
	touch $(STAMP)

# `make test` is the default suite, a few minutes. It leaves out the live tier (tests/live, marker `live`):
# a real scheduler, triggerer, dag processor and API server, killed and restarted, and a soak of many runs.
# `make test-live` runs that tier alone, with a soak of SOAK_RUNS runs (200: about 7 minutes on 2 cores).
# `make test-all` runs `make test`, then the live tier with a soak of 1,000 (about 17 minutes); CI runs it.
SOAK_RUNS ?= 200

test: install
	$(BIN)/python -m pytest -q -m "not live"

test-live: install
	WFRUN_SOAK_RUNS=$(SOAK_RUNS) $(BIN)/python -m pytest -q -s -rxX --durations=0 -m live tests/live

test-all: test
	$(MAKE) --no-print-directory test-live SOAK_RUNS=1000

lint: install
	$(BIN)/ruff check airflow_provider_wfrun tests example_dags scripts
	$(BIN)/ruff format --check airflow_provider_wfrun tests example_dags scripts

clean:
	rm -rf $(VENV) .airflow-home .pytest_cache .ruff_cache

demo: install
	$(BIN)/python scripts/demo.py

# Waiting cost against the peers' polling, other HTTP clients and HttpSensor (docs/benchmarks.md), over plain
# HTTP and TLS, in alternated rounds. Quick: about 15 minutes on 2 cores.
# BENCH_ARGS passes options through, e.g. BENCH_ARGS="--parts 2,3,1" (parts in that order).
BENCH_ARGS ?=

bench: bench-deps
	$(BIN)/python -m benchmarks.run --mode quick $(BENCH_ARGS)

# The large sizes (N = 1,000 / 5,000 / 10,000 waits, a 10-minute run through Airflow): about 45 minutes.
bench-full: bench-deps
	$(BIN)/python -m benchmarks.run --mode full $(BENCH_ARGS)

# The benchmarks' own extra (httpx-aiohttp, a compared alternative), on top of `make install`.
bench-deps: install
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test,bench]"
