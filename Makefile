# classmix_lab: the two commands of the README.
#   make demo  - set up (a virtual environment in .venv) and run the demo; prints the path of reports/index.html
#   make test  - set up with the development tools and run every test
#   make test-fast - the tests that run no notebook, no training run and no browser, one process per core
# PYTHON picks the interpreter that creates the environment (3.10 or newer).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q
# the lab's JupyterLab plugin (labextension/: a run asked for while a notebook's kernel starts waits for the kernel),
# linked into the environment's JupyterLab so that it follows this checkout (an editable install leaves data files out;
# a wheel installs it by itself)
LABEXT := share/jupyter/labextensions/classmix-lab-run-when-ready
# $(call link_labext,PREFIX): the plugin into the environment at PREFIX
link_labext = mkdir -p "$(1)/$(dir $(LABEXT))" && ln -sfn "$(CURDIR)/labextension" "$(1)/$(LABEXT)"

.PHONY: demo test test-fast setup setup-dev labextension export check-export clean-notebooks lint-notebooks gpu-check gpu-check-dry

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	$(call link_labext,$(VENV))
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	$(call link_labext,$(VENV))
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(BIN)/classmix-lab demo

test: setup-dev
	$(BIN)/python -m pytest -ra
	$(BIN)/nbdev-test --n-workers 2

test-fast: setup-dev
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto -m 'not slow and not browser' --durations=5

# the JupyterLab plugin in the active environment (conda: after `conda activate classmix_lab`)
labextension:
	prefix=$$($(RUN_PYTHON) -c 'import sys; print(sys.prefix)') && $(call link_labext,$$prefix)

# regenerate classmix_lab/ from nbs/ (never edit classmix_lab/ by hand)
export: setup-dev
	$(BIN)/nbdev-export

# strip outputs and execution counts from the notebooks (keeps papermill's 'parameters' tags)
clean-notebooks: setup-dev
	$(BIN)/nbdev-clean

# every GPU figure of the lab in one command (under 8 minutes on one H200): benchmarks/results/gpu.json.
# Runs from this checkout with the environment's Python (no install: a GPU machine may have no network);
# ARGS passes options, e.g. ARGS="--camvid-root /data/camvid". gpu-check-dry: toy sizes on the CPU (make test runs it).
RUN_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	$(RUN_PYTHON) benchmarks/gpu_check.py $(ARGS)

gpu-check-dry:
	$(RUN_PYTHON) benchmarks/gpu_check.py --dry $(ARGS)
