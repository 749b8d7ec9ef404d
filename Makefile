# Habits of the seed project: `make test`, `make speed`, `make capacity`.
PYTHON ?= python

.PHONY: install test test-all lint speed capacity memory train

install:
	$(PYTHON) -m pip install -e ".[test,dev]"

test:
	$(PYTHON) -m pytest -m "not slow"

test-all:
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check .

speed:
	$(PYTHON) scripts/bench_speed.py --out results/speed

capacity:
	$(PYTHON) scripts/bench_capacity.py --out results/capacity

memory:
	$(PYTHON) scripts/bench_memory.py --workers 2 --out results/memory

train:
	$(PYTHON) scripts/train.py --env CartPole-v1 --cell gal
