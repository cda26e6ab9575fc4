# Two entry points for a fresh machine (Linux, Python 3.11):
#   make book   - set up .venv, run every claim at the cpu preset (reusing current runs), build the book
#   make test   - set up .venv (and Chromium for the browser test), run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PRESET ?= cpu

.PHONY: setup book test test-fast clean-book bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[book,test]"
	touch $@

setup: $(VENV)/.installed

book: setup
	$(VENV)/bin/flatminima book --preset $(PRESET)

test: setup
	bash scripts/install-chromium.sh
	$(VENV)/bin/pytest

test-fast: setup
	$(VENV)/bin/pytest -m "not notebooks and not browser and not kernel"

bench: setup
	$(PY) -m pip install --quiet -e ".[bench]"
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-book:
	rm -rf _build book/generated/.staging book/generated/failed
