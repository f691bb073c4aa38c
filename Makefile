# Two entry points on a fresh machine: `make run` (default suite) and `make test`.
# Both create .venv when it is missing and install the pinned versions from constraints.txt.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUITE ?= quick
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: venv data browser run test test-fast bench ui clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(BIN)/.installed

# Fashion-MNIST from Debian's package (real data, no download at run time); installed when missing and possible.
data:
	@if [ ! -f $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null); \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' or pass --set data.root=DIR"; fi; fi

# Headless Chromium for tests/test_report.py (it opens the HTML report from file://); installed when missing and possible.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q chromium >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null); \
	  else echo "Chromium missing: run 'sudo apt-get install chromium' (tests/test_report.py needs it)"; fi; fi

run: venv data
	$(BIN)/python run_suite.py --suite $(SUITE) $(ARGS)

# Every test, the end-to-end runs through Ray and MLflow included: what CI runs (README: measured time).
test: venv data browser
	$(BIN)/python -m pytest $(ARGS)

# The loop while editing: every test but the end-to-end runs marked slow (README: measured time).
test-fast: venv data browser
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

bench: venv
	$(BIN)/python bench/gp_test.py

# Browse the runs in MLflow's UI: RUN=<run folder> opens the store that run wrote to (its run.json says
# where, wherever it was started from); without RUN, ./mlflow.db (every suite started from here).
ui: venv
	$(BIN)/python run_suite.py --ui $(RUN)

clean:
	rm -rf $(VENV) .pytest_cache
