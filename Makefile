# Two entry points, each doing all set-up on a fresh machine:
#   make search            the main job (architecture search on the embedded defaults)
#   make test              lint + the test suite (installs what the tests need, Debian's chromium included)
# TORCH_SPEC pins the CPU build that this machine has on disk; elsewhere pick your own, e.g.
#   make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BUDGET ?= 0.5GFLOPs
ARGS ?=
# Test files run in this many processes (pytest-xdist; a file's tests stay in one). Most of the suite waits on Ray,
# subprocesses and MLflow, so 2 finish in about 18 minutes on a 2-core machine where 1 took 25 (bench/RESULTS.md).
TEST_WORKERS ?= 2

.PHONY: search test figures setup browser bytecode

setup: $(VENV)/.installed

# uv installs what pip would, from the same indexes: 70 s from a fresh clone instead of pip's 3 min 15 s. Bytecode
# is compiled as pip does (without it, with PYTHONDONTWRITEBYTECODE set, every import compiles: 22 s instead of 9 s
# to import a search's driver). bench/RESULTS.md, issue 24.
# It does not read pip's configuration: pip's find-links folder (where this machine keeps its PyTorch wheel; from
# PIP_FIND_LINKS or pip.conf) is passed on.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV = $(VENV)/bin/uv pip install -q --compile-bytecode --python $(VENV)/bin/python $(foreach f,$(FIND_LINKS),--find-links $(f))

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q "uv>=0.13,<0.14"
	$(UV) $(TORCH_SPEC)
	$(UV) -e ".[test]"
	touch $@

# tests/test_mlflow_ui.py drives a headless Debian chromium against a real MLflow server. Nothing to do when a
# chromium is on PATH; otherwise apt-get installs it, as root or through sudo.
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "error: tests/test_mlflow_ui.py needs chromium on PATH and this machine has no apt-get: install" \
			"chromium with its package manager, then run make test again" >&2; exit 2; \
	fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else \
		echo "error: tests/test_mlflow_ui.py needs chromium on PATH; installing it needs root: run" \
			"'apt-get install -y chromium' as root (or make test as root, or with sudo installed), then make test" >&2; \
		exit 2; \
	fi; \
	echo "installing Debian's chromium for tests/test_mlflow_ui.py: $$sudo apt-get install chromium"; \
	$$sudo apt-get update -q && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

# The project's own modules, compiled once: it is installed editable, so without this every process (a driver, each
# Ray worker) compiles them from source where PYTHONDONTWRITEBYTECODE is set, as on this machine (0.5 s a process).
SOURCES = blocks search_space analysis pose supernet fidelity checkpoints nas hrnas experiments
bytecode:
	$(VENV)/bin/python -m compileall -q $(SOURCES)

search: setup bytecode
	$(VENV)/bin/python experiments/search.py --budget $(BUDGET) $(ARGS)

figures: setup bytecode
	$(VENV)/bin/python bench/figures.py $(ARGS)

test: setup browser bytecode
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20
