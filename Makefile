# Two commands for a newcomer: `make repro` (set up + run the default pipeline), `make test`.
VENV ?= .venv
PYTHON ?= python3
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup repro test bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	touch $@

repro: setup
	dvc repro

test: setup
	pytest -q

bench: setup
	python benchmarks/generation.py
