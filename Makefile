# One command to set up and run the main job (`make course`), one to set up and test (`make test`).
# Both create .venv on first use. torch is installed first (CPU build from the local wheel on
# CPU machines); on a GPU machine pass VENV_FLAGS=--system-site-packages to keep its own torch.
PY ?= python3
VENV ?= .venv
VENV_FLAGS ?=
BIN := $(VENV)/bin

.PHONY: setup test test-fast course lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[notebooks,dev]"
	touch $@

# unit tests + every notebook (nbval, smoke size, runtime budgets enforced), on 2 workers
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile

# unit tests only (seconds)
test-fast: setup
	$(BIN)/python -m pytest tests -q

# the main job: execute the whole course at full size; write figures/ and the offline course site
# build/course/index.html (pages, executed notebooks, kernel logs)
course: setup
	$(BIN)/drdd-edu course

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check drdd_edu tests

clean:
	rm -rf build test-artifacts notebooks/*.ipynb .pytest_cache
