# Habits of lstms.pth: `make test`, `make speed`, `make capacity`.
PYTHON ?= python

.PHONY: install test test-all lint docs speed capacity memory train

install:
	$(PYTHON) -m pip install -e ".[test,dev]"

test:
	$(PYTHON) -m pytest -m "not slow"

test-all:  # the long learning runs too (pyproject's addopts deselect them otherwise)
	$(PYTHON) -m pytest -m "slow or not slow"

lint:  # ruff comes with the dev extra: pip install -e ".[dev]"
	$(PYTHON) -m ruff check .

docs:  # the documentation site at http://127.0.0.1:8000 (MkDocs comes with the test and dev extras)
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs serve

speed:
	$(PYTHON) scripts/bench_speed.py --out results/speed

capacity:
	$(PYTHON) scripts/bench_capacity.py --out results/capacity

memory:
	$(PYTHON) scripts/bench_memory.py --workers 2 --out results/memory

train:
	$(PYTHON) scripts/train.py --env CartPole-v1 --cell gal
