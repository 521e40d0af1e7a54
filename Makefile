# The two commands of the README's Quick start, and the venv they share.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint

demo: $(VENV)/.installed  ## the whole system on this machine: Redis, sandbox, workers, a batch
	$(BIN)/segq demo

test: $(VENV)/.installed  ## every test, against processes the tests start themselves
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 4 --dist worksteal --durations=15

bench: $(VENV)/.installed  ## the benchmarks under tests/benchmarks/, each prints its ratios
	for bench in tests/benchmarks/bench_*.py; do \
		$(BIN)/python -m tests.benchmarks.$$(basename $$bench .py) || exit 1; done

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,demo]'
	touch $@
