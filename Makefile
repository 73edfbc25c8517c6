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
# Chapter 10 is not run by nbval: tests/test_chapter10.py executes it top to bottom with
# downloads, training and a resume switched on (the book build runs it as readers see it).
test: venv chromium
	$(PY) -m pytest tests --nbval-lax --nbval-current-env --nbval-cell-timeout=900 book --ignore=book/10_reproducing_on_gpu.ipynb

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
