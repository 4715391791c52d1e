# Two commands a fresh clone needs: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install quickstart test lint browser source-backbone clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Offline: transfer a digits 0-4 backbone to digits 5-9 with 2 labels per class, then the same
# network from scratch on the same labels, for comparison.
quickstart: install
	$(PY) -m ktransfer.train --flagfile=configs/quickstart.cfg --overwrite
	$(PY) -m ktransfer.train --flagfile=configs/quickstart_scratch.cfg --overwrite

lint: install
	$(PY) -m ruff check .

# The report test renders report.html in headless Chromium (Debian package `chromium`).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$(command -v sudo || true); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

# Three pytest-xdist workers on 2 cores (much of the suite waits on subprocess start-up);
# each test file stays on one worker, and files start in collection order (slow ones first,
# see tests/conftest.py) rather than xdist's default of the files with most tests first.
test: install lint browser
	$(PY) -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder

# Re-creates the shipped source backbone (ktransfer/assets/digits04_small_cnn.weights.h5).
source-backbone: install
	$(PY) -m ktransfer.train --flagfile=configs/digits_source.cfg --overwrite
	cp runs/digits_source/backbone.weights.h5 ktransfer/assets/digits04_small_cnn.weights.h5

clean:
	rm -rf runs .pytest_cache .ruff_cache
