# careledger — the commands a newcomer needs.  State lives under $CARELEDGER_HOME (default .careledger).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv jars font servers up down demo test test-unit test-integration lint schemas bench clean

help:
	@echo "make demo   - start the stack, stream the calibrated 2024H1 simulation, print the dashboard URL"
	@echo "make test   - install what the tests need, start Kafka/ClickHouse/PostgreSQL, run all tests"
	@echo "make up / make down - the local stack in the background (Kafka, processors, API)"
	@echo "make lint   - ruff, the layer rules (lint-imports), mypy strict on the domain and runtime"
	@echo "make schemas - regenerate schemas/json;  make bench - benchmarks"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

jars: venv
	$(BIN)/python -c "from infra.kafka_broker import ensure_jars; ensure_jars()"

# the dashboard's Chinese font: a subset of Debian's fonts-wqy-microhei (installed when missing), served
# with the page so phones and desks without a CJK font show Chinese (infra/dashboard_font.py)
font: venv
	$(BIN)/python -m infra.dashboard_font

servers: venv
	$(BIN)/python -m infra.packages clickhouse-server clickhouse-client postgresql chromium fonts-wqy-microhei

up: jars font
	$(BIN)/careledger up

down:
	@if [ -x $(BIN)/careledger ]; then $(BIN)/careledger down; else echo "nothing to stop"; fi

demo: up
	$(BIN)/careledger demo

# The unit tests run alongside the integration tests (which mostly wait for servers and workers):
# the whole suite in about the integration tests' time.  Each run has its own pytest temp directory;
# the unit tests' report is printed after the integration tests' one.
test: jars servers font
	@mkdir -p test-artifacts .pytest-tmp
	@$(BIN)/pytest -q -p no:cacheprovider --basetemp=.pytest-tmp/unit tests/unit > test-artifacts/unit-tests.log 2>&1 & \
	unit=$$!; \
	$(BIN)/pytest -q -p no:cacheprovider --basetemp=.pytest-tmp/integration --durations=30 tests/integration; \
	integration=$$?; \
	wait $$unit; unit_rc=$$?; \
	echo "==================== unit tests (run alongside the integration tests) ===================="; \
	cat test-artifacts/unit-tests.log; \
	echo "integration tests: exit $$integration; unit tests: exit $$unit_rc"; \
	test $$integration -eq 0 && test $$unit_rc -eq 0

test-unit: venv
	$(BIN)/pytest -q tests/unit

test-integration: jars servers font
	$(BIN)/pytest -q tests/integration

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

schemas: venv
	$(BIN)/python -m schemas.export

bench: jars
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/replay.py

clean: down
	rm -rf .careledger
