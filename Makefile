# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

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
	$(BIN)/pytest -q tests/unit

test: setup
	bash infra/kafka.sh install
	bash infra/anvil.sh install
	bash infra/clickhouse.sh install
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(BIN)/ruff check .
	$(BIN)/mypy
	docker-compose config -q
	$(BIN)/pytest -q -rs

clean:
	bash infra/down.sh || true
	rm -rf .haltwatch
