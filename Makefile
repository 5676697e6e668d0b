# `make run` and `make test` are the whole set-up: each creates .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install run test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) examples/train_digits.py --compile

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) tests

bench: $(STAMP)
	$(PY) benchmarks/bench_step.py

lint: $(STAMP)
	$(PY) -m ruff check fusegrad tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
