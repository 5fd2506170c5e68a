# AOB developer entry points. `make demo` and `make test` work on a fresh machine: they
# create the virtualenv, install AOB, and start the local stack (Kafka, PostgreSQL, MinIO).

VENV   ?= .venv
PY     := $(VENV)/bin/python
AOB    := $(VENV)/bin/aob
PYTEST := $(VENV)/bin/pytest
STAMP  := $(VENV)/.aob-installed
# The console's bundle (served by the query API at /console/): rebuilt only when its sources
# or its locked dependencies change.
CONSOLE_STAMP := console/dist/.built
CONSOLE_SRC   := $(wildcard console/src/*) console/index.html console/package.json \
                 console/package-lock.json console/vite.config.ts console/tsconfig.json
# The browser the console's tests drive (Debian's; Playwright's own download is not used).
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup up down status test test-unit demo lint browser

setup: $(STAMP) $(CONSOLE_STAMP)

# Reinstall only when the project metadata changes; otherwise `make setup` is instant.
$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
		PYBIN=""; \
		for c in python3.13 python3.12 python3.11 python3; do \
			if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
				PYBIN=$$c; break; \
			fi; \
		done; \
		if [ -z "$$PYBIN" ]; then echo "error: Python >= 3.11 is needed (python3.11 or newer on PATH)" >&2; exit 1; fi; \
		echo "creating $(VENV) with $$PYBIN"; \
		$$PYBIN -m venv $(VENV) || { echo "error: '$$PYBIN -m venv' failed (Debian: apt-get install python3-venv)" >&2; exit 1; }; \
	fi
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

$(CONSOLE_STAMP): $(CONSOLE_SRC)
	@command -v npm >/dev/null 2>&1 || { echo "error: building the console needs Node.js 20+ and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	cd console && npm ci --no-audit --no-fund && npm run build
	@touch $(CONSOLE_STAMP)

# Chromium for the console's browser tests, installed with apt-get when missing (as root, as
# the stack installs Java and PostgreSQL).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing chromium (apt-get)"; \
			apt-get update -q && apt-get install -y -q --no-install-recommends chromium; \
		else \
			echo "error: the console's browser tests need Chromium at $(CHROMIUM) (Debian: apt-get install chromium)" >&2; exit 1; \
		fi; \
	fi

up: setup
	$(AOB) up

down: setup
	$(AOB) down

status: setup
	$(AOB) status

# The tests never talk to a real model provider: without OPENAI_API_KEY and OPENAI_BASE_URL,
# `aob up` starts the local scripted model and points the agent workers at it.
# The tests use the scripted model, a loopback http target and a loopback MCP server
# (tests/connected/conftest.py), which the workers may reach.
TEST_ENV = env -u OPENAI_API_KEY -u OPENAI_BASE_URL AOB_HTTP_ALLOWLIST=127.0.0.1:18095,127.0.0.1:18096

test: setup browser
	$(TEST_ENV) $(AOB) up
	$(TEST_ENV) $(PYTEST) -q

# The pure lane: no stack, no servers, nothing started (the scripted model runs in process).
test-unit: setup
	$(TEST_ENV) $(PYTEST) tests/unit -q

demo: setup
	$(AOB) up
	$(AOB) demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict schemas run_model processors
