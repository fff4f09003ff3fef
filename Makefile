# Two commands do all the set-up on a fresh clone:
#   make quickstart   creates .venv, installs aemon, runs `aemon quickstart`
#   make test         creates .venv, installs aemon with its dev tools, runs the tests
# TORCH pins the CPU wheel that these machines hold locally; set TORCH=torch on a CUDA machine.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install quickstart test lint bench clean

$(BIN)/aemon: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	touch $(BIN)/aemon

install: $(BIN)/aemon

quickstart: install
	$(BIN)/aemon quickstart

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check aemon flows tests
	$(BIN)/ruff format --check aemon flows tests
	$(BIN)/mypy aemon flows

bench: install
	$(BIN)/aemon benchmark

clean:
	rm -rf $(VENV) .aemon .pytest_cache .mypy_cache .ruff_cache
