# One entry point for users and CI. `make install` is idempotent and quick when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-live test-all lint demo clean bench bench-full test-distributed bench-airflow bench-airflow-full

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]"
	touch $(STAMP)

# `make test` is the default suite, a few minutes. It leaves out the live tier (tests/live, marker `live`):
# a real scheduler, triggerer, dag processor and API server, killed and restarted, and a soak of many runs.
# `make test-live` runs that tier alone, with a soak of SOAK_RUNS runs (200: about 7 minutes on 2 cores).
# `make test-all` runs `make test`, then the live tier and the distributed tier with soaks of 1,000 each.
# CI runs the live tier with 200 and the distributed tier with 1,000 (.ci/run).
SOAK_RUNS ?= 200

test: install
	$(BIN)/python -m pytest -q -m "not live and not distributed"

test-live: install
	WFRUN_SOAK_RUNS=$(SOAK_RUNS) $(BIN)/python -m pytest -q -s -rxX --durations=0 -m live tests/live

test-all: test
	$(MAKE) --no-print-directory test-live SOAK_RUNS=1000
	$(MAKE) --no-print-directory test-distributed DIST_SOAK_RUNS=1000

# The distributed tier (tests/distributed, marker `distributed`): PostgreSQL (127.0.0.1:5432) and Redis
# (127.0.0.1:6379) must run; two Celery workers and two triggerers, killed mid-flight, and a soak of
# DIST_SOAK_RUNS runs. Without the services it says so and skips (fails under CI=true).
DIST_SOAK_RUNS ?= 200
DIST_STAMP := $(VENV)/.installed-distributed

$(DIST_STAMP): $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test,distributed]"
	touch $(DIST_STAMP)

test-distributed: $(DIST_STAMP)
	WFRUN_DISTRIBUTED_SOAK_RUNS=$(DIST_SOAK_RUNS) $(BIN)/python -m pytest -q -s -rsxX --durations=0 \
		-m distributed tests/distributed

lint: install
	$(BIN)/ruff check airflow_provider_wfrun tests example_dags scripts
	$(BIN)/ruff format --check airflow_provider_wfrun tests example_dags scripts

clean:
	rm -rf $(VENV) .airflow-home .pytest_cache .ruff_cache

demo: install
	$(BIN)/python scripts/demo.py

# Waiting cost against the peers' polling and HttpSensor (docs/benchmarks.md). Quick: a few minutes on 2 cores.
bench: install
	$(BIN)/python -m benchmarks.run --mode quick

# The large sizes (N = 1,000 / 5,000 / 10,000 waits, a 10-minute run through Airflow): about 45 minutes.
bench-full: install
	$(BIN)/python -m benchmarks.run --mode full

# Many deferred task instances in the distributed tier's deployment, ours beside HttpSensorTrigger
# (docs/benchmarks.md). Needs PostgreSQL and Redis. Quick: N = 1,000 per side through the scheduler and workers.
bench-airflow: $(DIST_STAMP)
	$(BIN)/python -m benchmarks.airflow_scale --mode quick

# The full size: 5,000 per side, deferrals recorded directly (the tasks are not started); about 30 minutes.
bench-airflow-full: $(DIST_STAMP)
	$(BIN)/python -m benchmarks.airflow_scale --mode full
