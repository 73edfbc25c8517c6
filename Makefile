# One-command set-up: `make test` and `make book` create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE
export MPLBACKEND ?= Agg

.PHONY: venv test unit-test notebook-test book clean-book widget-js chromium browser-test

# Book and browser-test settings.
CHROMIUM ?= /usr/bin/chromium
# apt-get needs root; CI runs as root, elsewhere sudo is used.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[book,test,widgets,baselines]"
	touch $(STAMP)

unit-test: venv
	$(PY) -m pytest tests

notebook-test: venv
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 book

# tests/test_book_site.py (collected from tests/) is the browser test: it needs Chromium.
# It builds the book, which executes every notebook and fails on any cell error
# (execute: raise_on_error in _config.yml). nbval runs the notebooks again, except three:
# chapter 10, which tests/test_chapter10.py executes top to bottom with downloads, training
# and a resume switched on, and the two chapters that train live (06, 07: minutes each),
# which the book build alone runs (a second run would add minutes to CI and check nothing new).
NBVAL_SKIP := 06_objectives 07_training 10_reproducing_on_gpu
test: venv chromium
	$(PY) -m pytest tests --nbval-lax --nbval-current-env --nbval-cell-timeout=900 book $(foreach n,$(NBVAL_SKIP),--ignore=book/$(n).ipynb)

# From a clean _build: an unchanged incremental build re-reads nothing and passes.
# Without MPLBACKEND (exported as Agg above) the notebook kernels plot inline, as in Jupyter.
# The stamp (dated when the build started) tells tests/test_book_site.py that this
# complete build is newer than every source it was made from.
book: venv widget-js
	rm -rf _build/html _build/.doctrees _build/jupyter_execute
	mkdir -p _build && touch _build/.book-build-start
	env -u MPLBACKEND $(VENV)/bin/jupyter-book build . -W --keep-going
	touch -r _build/.book-build-start _build/html/.book-build-ok

# Widget manager, require.js and MathJax from the npm registry (pinned, hash-checked)
# into book/_widgets/ (git-ignored), which _config.yml copies into the site.
widget-js: venv
	$(PY) tools/fetch_widget_js.py

# Debian's Chromium for the headless browser test; installed only when missing.
chromium: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium

# The browser test alone (builds the book unless a fresh `make book` result exists).
browser-test: venv chromium
	$(PY) -m pytest tests/test_book_site.py -v -s

clean-book:
	rm -rf _build
