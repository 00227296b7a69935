# One entry point for users and CI. `make install` is idempotent and quick when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check airflow_provider_wfrun tests example_dags scripts
	$(BIN)/ruff format --check airflow_provider_wfrun tests example_dags scripts

clean:
	rm -rf $(VENV) .airflow-home .pytest_cache .ruff_cache

demo: install
	$(BIN)/python scripts/demo.py
