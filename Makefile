# Two entry points, each doing all set-up on a fresh machine:
#   make search            the main job (architecture search on the embedded defaults)
#   make test              lint + the test suite
# TORCH_SPEC pins the CPU build that this machine has on disk; elsewhere pick your own, e.g.
#   make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BUDGET ?= 0.5GFLOPs
ARGS ?=

.PHONY: search test setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(TORCH_SPEC)
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $@

search: setup
	$(VENV)/bin/python experiments/search.py --budget $(BUDGET) $(ARGS)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -q
