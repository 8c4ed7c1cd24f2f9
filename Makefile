# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# pytest-xdist workers. Integration tests mostly wait on servers and subprocesses, so more workers than cores
# pay off; each worker starts servers of its own (tests/ports.py).
TEST_WORKERS ?= 4
UNIT_WORKERS ?= 4

.PHONY: setup infra demo test lint unit clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	bash infra/kafka.sh install
	bash infra/anvil.sh install
	$(BIN)/haltwatch demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q -n $(UNIT_WORKERS) tests/unit

test: setup
	bash infra/kafka.sh install
	bash infra/anvil.sh install
	bash infra/clickhouse.sh install
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(BIN)/ruff check .
	$(BIN)/mypy
	docker-compose config -q
	$(BIN)/pytest -q -rs -n $(TEST_WORKERS) --dist worksteal --durations=15

clean:
	bash infra/down.sh || true
	rm -rf .haltwatch
