# One entry point for every task; each target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Built tools and Cassandra's jars live here, outside the repository.
CASSANDRA_BACKUP_CACHE ?= $(HOME)/.cache/cassandra-backup-operator
export CASSANDRA_BACKUP_CACHE

.PHONY: help install tools cassandra crds lint unit integration e2e test demo bench kind-e2e clean

help:
	@echo "make demo   - build what is missing, then run the operator end to end"
	@echo "make test   - lint, then unit, integration and end-to-end tests"
	@echo "make bench  - a run over 50 sidecars; figures go to BENCHMARKS.md"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -e '.[test]'
	@touch $@

install: $(VENV)/.installed

tools:
	@hack/build-tools.sh all >/dev/null

cassandra:
	@hack/cassandra.sh >/dev/null

crds: install
	$(VENV)/bin/cassandra-backup-operator crds --output-dir crds
	cp crds/*.yaml deploy/crds/
	cp crds/*.yaml helm/cassandra-backup-operator/crds/

# Each test tier has a conftest.py of its own, so mypy reads one folder at a time.
lint: install
	$(VENV)/bin/ruff check operator tests hack bench
	$(VENV)/bin/mypy
	for dir in tests/unit tests/integration tests/e2e tests/support hack bench; do \
	  MYPYPATH=operator:tests $(VENV)/bin/mypy --strict --no-error-summary $$dir || exit 1; \
	done

unit: install
	$(VENV)/bin/pytest tests/unit

integration: install tools
	$(VENV)/bin/pytest tests/integration

e2e: install tools cassandra
	$(VENV)/bin/pytest tests/e2e

test: install tools cassandra lint
	$(VENV)/bin/pytest tests

demo: install tools cassandra
	$(PY) hack/demo.py

bench: install tools
	$(PY) bench/fanout.py

# Needs Docker: builds both images, creates a kind cluster and takes a backup there.
kind-e2e: install
	hack/kind-e2e.sh

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
