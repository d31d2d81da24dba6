# MosMed Explorer: the two commands are `make run` and `make test`.
# Each creates .venv/ in the repo root when it is missing and (re)installs the
# requirements when a requirements file is newer than the stamp left by the last install.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-requirements
DEV_STAMP := $(VENV)/.installed-requirements-dev
PIP := $(BIN)/python -m pip --disable-pip-version-check

# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k viewer -x"`.
PYTEST_ARGS ?=
# Extra streamlit arguments, e.g. `make run ST_ARGS="--server.port 8600"`.
ST_ARGS ?=
# What `make clean-cache` empties: the cache the app uses (MOSMED_CACHE, else the
# repo's data_cache/), or another one: `make clean-cache CACHE_DIR=/path`.
CACHE_DIR ?= $(or $(MOSMED_CACHE),data_cache)

.PHONY: help run test bench soak screenshots clean-cache venv serve-replicas

help:
	@echo "make run          serve the app (opens on a generated demo set; MOSMED_DATA=/path selects a dataset)"
	@echo "make test         ruff check, then the whole pytest suite (browser, PostgreSQL, nginx, Dask tests included)"
	@echo "make bench        performance benchmarks -> bench/results.json"
	@echo "make soak         long fault, load and fuzz runs (pytest -m soak)"
	@echo "make screenshots  full-page PNGs of every page into docs/img/"
	@echo "make clean-cache  empty $(CACHE_DIR)/ (derived data only; rebuilt on demand)"
	@echo "make serve-replicas N=2 PORT=8600  N app processes behind nginx on 127.0.0.1:PORT (Ctrl-C stops all)"

# The interpreter itself is the marker that the venv exists.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(PIP) install -r requirements.txt
	touch $@

# requirements-dev.txt includes requirements.txt, so it satisfies both stamps.
$(DEV_STAMP): requirements-dev.txt requirements.txt | $(BIN)/python
	$(PIP) install -r requirements-dev.txt
	touch $@ $(RUN_STAMP)

venv: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/streamlit run app.py $(ST_ARGS)

# Browser tests run against Debian's /usr/bin/chromium; Playwright never downloads one.
# Lint and format check first (ruff, pyproject.toml's rules): seconds; either fails the run like a test.
test: $(DEV_STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/ruff format --check --quiet .
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	@test -f bench/run.py || { echo "bench/run.py is missing" >&2; exit 2; }
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python bench/run.py

# -m soak overrides pytest.ini's -m "not soak"; -s so the runs print their figures.
soak: $(DEV_STAMP)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pytest -m soak -s --timeout=3600 $(PYTEST_ARGS)

# Issue 13: N Streamlit processes (each on its own 127.0.0.1 port) behind Debian's nginx on 127.0.0.1:PORT,
# generated config, pid and logs in a temporary folder; Ctrl-C stops them all (scripts/serve_replicas.py).
N ?= 2
PORT ?= 8600
serve-replicas: $(RUN_STAMP)
	$(BIN)/python scripts/serve_replicas.py --replicas $(N) --port $(PORT)

screenshots: $(DEV_STAMP)
	$(BIN)/python scripts/screenshots.py

# Everything under the cache is derived data (keyed, written atomically), so it is
# always safe to delete; README.md, which explains the folder, stays.
clean-cache:
	@if [ ! -d "$(CACHE_DIR)" ]; then echo "nothing to clean: $(CACHE_DIR) does not exist"; exit 0; fi; \
	real="$$(cd "$(CACHE_DIR)" && pwd -P)"; \
	case "$$real" in /|"$$HOME"|"$$(pwd -P)") echo "refusing to empty $$real" >&2; exit 2;; esac; \
	find "$$real" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +; \
	echo "emptied $$real/"
