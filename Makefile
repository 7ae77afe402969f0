# Two commands on a fresh machine: `make train` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
ARGS ?=

.PHONY: install train test lint bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip >/dev/null
	$(VENV)/bin/pip install -e '.[dev]'
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

clean-venv:
	rm -rf $(VENV)
