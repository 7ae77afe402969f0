# Two commands on a fresh machine: `make train` and `make test` (see README.md).
# Both install the exact environment of requirements.lock into .venv/ first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
LOCK := requirements.lock
ARGS ?=

.PHONY: install train test lint bench lock clean-venv

# Every package at the locked version and hash, nothing resolved at install time (--no-deps);
# then the project itself, editable, built with the locked setuptools (--no-build-isolation).
$(VENV)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) -m recipes.timit.train $(ARGS)

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) scripts/bench_rnn.py $(ARGS)

# Refresh the lock on purpose: keeps today's pins where pyproject.toml still allows them;
# `make lock ARGS=--upgrade` takes the newest of everything, `ARGS="--upgrade-package NAME"` one.
lock: install
	$(VENV)/bin/pip-compile --extra dev --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links -c lock-constraints.txt -o $(LOCK) $(ARGS) pyproject.toml

clean-venv:
	rm -rf $(VENV)
