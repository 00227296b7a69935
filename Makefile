# One entry point for users and CI. `make install` is idempotent and quick when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-live test-all lint demo clean bench bench-full bench-smoke mutation test-floor install-ui test-ui test-distributed bench-airflow bench-airflow-full bench-deps

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

# `make test` is the default suite, a few minutes. It leaves out the tiers that need more than `.[dev]` (tests/ui,
# tests/distributed: their packages come with their own targets) and the live tier (tests/live, marker `live`):
# a real scheduler, triggerer, dag processor and API server, killed and restarted, and a soak of many runs.
# `make test-live` runs that tier alone, with a soak of SOAK_RUNS runs (200: about 7 minutes on 2 cores).
# `make test-all` runs `make test`, then the live tier and the distributed tier with soaks of 1,000 each.
# CI (.ci/run) runs the live tier with its one soak of 1,000 and the distributed tier with a soak of 200.
SOAK_RUNS ?= 200
# The fast tiers spend most of their time waiting on emulated runs (one process uses about a third of a core),
# so they run in TEST_WORKERS processes (pytest-xdist; each has its own emulator and Airflow home). 1: serially.
TEST_WORKERS ?= 4

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not live and not ui and not distributed" \
		--ignore=tests/ui --ignore=tests/distributed

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
	$(BIN)/mypy

# The declared floors, tried: the oldest supported Python, every direct dependency at its lowest allowed
# version (`uv pip install --resolution lowest-direct`), in its own venv. Runs the fast tiers, one
# example DAG end to end against the emulator (`airflow dags test`), and the live tier's human-input cases
# (tests/live): before Airflow 3.3 a paused run's form waits in HITLTrigger, which only a real triggerer
# runs, and a person answers it through the REST API. A few minutes on 2 cores (the live cases: about 2).
FLOOR_PYTHON ?= python3.10
FLOOR_VENV := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed
FLOOR_TIERS ?= tests/unit tests/hooks tests/triggers tests/operators

# The oldest supported Python: $(FLOOR_PYTHON) on PATH, else pyenv's newest 3.10 (its shim may not be active).
FLOOR_VERSION := (3, 10)
FIND_FLOOR_PYTHON := for candidate in $(FLOOR_PYTHON) $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 \
	2>/dev/null | sort -V -r); do "$$candidate" -c 'import sys; assert sys.version_info[:2] == $(FLOOR_VERSION); \
	print(sys.executable)' 2>/dev/null && break; done

$(FLOOR_STAMP): pyproject.toml $(STAMP)
	rm -rf $(FLOOR_VENV)
	@python=$$($(FIND_FLOOR_PYTHON)); test -n "$$python" || { echo "no Python 3.10: install it (pyenv install 3.10)"; exit 1; }; \
	echo "floor Python: $$python"; \
	UV_PYTHON_DOWNLOADS=never $(BIN)/uv venv --quiet --python "$$python" $(FLOOR_VENV)
	$(BIN)/uv pip install --quiet --python $(FLOOR_VENV)/bin/python --resolution lowest-direct -e ".[test,forms]"
	touch $(FLOOR_STAMP)

test-floor: $(FLOOR_STAMP)
	@$(FLOOR_VENV)/bin/python -c 'import sys, importlib.metadata as m; \
		print("floor: Python", sys.version.split()[0] + ", Airflow", m.version("apache-airflow"))'
	$(FLOOR_VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) -m "not live" -p no:cacheprovider $(FLOOR_TIERS)
	$(FLOOR_VENV)/bin/python scripts/demo.py --dags example_wfrun_chenyu --home .airflow-home-floor
	$(FLOOR_VENV)/bin/python -m pytest -q -m live -p no:cacheprovider -rxX --durations=5 tests/live -k human_input

# The browser tier (tests/ui): the Airflow UI's add-connection form of every connection type, opened in
# headless Chromium (Debian's package; Playwright drives it, it cannot download its own browser here).
install-ui: install
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev,ui]"

# Screenshots land in docs/img/ (the README shows them).
test-ui: install-ui
	$(BIN)/python -m pytest -q -m ui -p no:cacheprovider tests/ui

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .airflow-home .airflow-home-floor .pytest_cache .ruff_cache .mypy_cache

demo: install
	$(BIN)/python scripts/demo.py

# Waiting cost against the peers' polling, other HTTP clients and HttpSensor (docs/benchmarks.md), over plain
# HTTP and TLS, in alternated rounds. Quick: about 15 minutes on 2 cores.
# BENCH_ARGS passes options through, e.g. BENCH_ARGS="--parts 2,3,1" (parts in that order), or part 1 alone
# on some platforms and contenders, resized (never written to the doc): BENCH_ARGS="--parts 1 --platforms
# comfyui --contenders ours,aiohttp,peers --n 300 --interval 2 --window 8 --rounds 2".
BENCH_ARGS ?=

bench: bench-deps
	$(BIN)/python -m benchmarks.run --mode quick $(BENCH_ARGS)

# The large sizes (N = 1,000 / 5,000 / 10,000 waits, a 10-minute run through Airflow): about 45 minutes.
bench-full: bench-deps
	$(BIN)/python -m benchmarks.run --mode full $(BENCH_ARGS)

# Every part of the benchmark on every platform, tiny (not a measurement, about a minute; tests/benchmarks
# runs the same in `make test`).
bench-smoke: bench-deps
	$(BIN)/python -m benchmarks.run --mode smoke $(BENCH_ARGS)

# The benchmarks' own extra (httpx-aiohttp, a compared alternative), on top of `make install`.
bench-deps: install
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test,bench]"

# Mutation testing of the adapters and the run model with the fast adapter tests ([tool.mutmut] in
# pyproject.toml). CPU heavy, so not in CI; `.venv/bin/mutmut results` lists the survivors afterwards.
mutation: install
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json

# Many deferred task instances in the distributed tier's deployment, ours beside HttpSensorTrigger
# (docs/benchmarks.md). Needs PostgreSQL and Redis. Quick: N = 1,000 per side through the scheduler and workers.
bench-airflow: $(DIST_STAMP)
	$(BIN)/python -m benchmarks.airflow_scale --mode quick

# The full size: 5,000 per side, deferrals recorded directly (the tasks are not started); about 30 minutes.
bench-airflow-full: $(DIST_STAMP)
	$(BIN)/python -m benchmarks.airflow_scale --mode full
