# Two commands on a fresh machine: `make serve` and `make test`. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tests/js/node_modules/.installed

CHROMIUM := /usr/bin/chromium
PROMTOOL := /usr/bin/promtool

.PHONY: install serve notifier test lint typecheck pytest lock clean screenshots check-config conformance conformance-fast

install: $(STAMP) $(NODE_STAMP) $(CHROMIUM) $(PROMTOOL)

# The editable install also builds the C delivery loops (src/hlgateway/server/_delivery.c)
# with the system compiler; without one it goes on, and the Python loops run.
$(STAMP): requirements.lock pyproject.toml setup.py src/hlgateway/server/_delivery.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The seed's JavaScript client is tested under Node with the npm `ws` package.
$(NODE_STAMP): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --silent --no-audit --no-fund
	touch $@

# The dashboard's browser tests drive Debian's Chromium with Playwright (never
# `playwright install`, which downloads browsers). Needs root, as on a fresh machine.
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The tests lint /metrics with `promtool check metrics`, from Debian's prometheus
# package. Only the tool is wanted: the server the package brings is kept stopped.
$(PROMTOOL):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
	systemctl disable --now prometheus >/dev/null 2>&1 || true

serve: install
	$(BIN)/hlgateway serve

# The Telegram notifier on the simulator: simulator (:8090), gateway (:8080), bot.
# Needs TELEGRAM_BOT_TOKEN; the bot's state goes to .notifier.db. See docs/notifier.md.
notifier: install
	@test -n "$$TELEGRAM_BOT_TOKEN" || { echo "set TELEGRAM_BOT_TOKEN (from @BotFather; docs/notifier.md)"; exit 2; }
	@$(BIN)/hlgateway simulate --port 8090 >/dev/null 2>&1 & SIM=$$!; \
	$(BIN)/hlgateway serve --upstream ws://127.0.0.1:8090/ws & GW=$$!; \
	trap 'kill $$SIM $$GW 2>/dev/null' EXIT INT TERM; \
	until $(BIN)/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/health', timeout=1)" 2>/dev/null; do sleep 0.3; done; \
	$(BIN)/hlgateway notifier --gateway ws://127.0.0.1:8080/ws --database .notifier.db $(NOTIFIER_ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

# The whole suite with the C delivery loops (when built), then the modules that
# exercise delivery again with the Python loops (HLGATEWAY_SPEEDUPS=0).
DELIVERY_TESTS := tests/server/test_delivery.py tests/server/test_outbox.py tests/server/test_flush_slices.py \
	tests/server/test_fanout.py tests/test_hub.py tests/server/test_recovery.py

pytest: install
	$(BIN)/pytest
	HLGATEWAY_SPEEDUPS=0 $(BIN)/pytest $(DELIVERY_TESTS)

test: lint typecheck pytest

# The dashboard's screenshots in docs/screenshots, taken by its browser tests.
screenshots: install
	HLGATEWAY_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/browser -q

check-config: install
	$(BIN)/hlgateway check-config

# The Autobahn TestSuite is Python 2 software: a throw-away virtualenv of its own
# (.conformance/), from PyPI, every package pinned (bench/conformance/requirements-py2.txt).
PY2 ?= /root/.pyenv/versions/2.7.18/bin/python
CONFORMANCE := .conformance
CONFORMANCE_STAMP := $(CONFORMANCE)/.installed

$(CONFORMANCE_STAMP): bench/conformance/requirements-py2.txt
	rm -rf $(CONFORMANCE) && mkdir -p $(CONFORMANCE)
	$(PY2) -m pip install --quiet --disable-pip-version-check --target $(CONFORMANCE)/bootstrap virtualenv==16.7.12
	PYTHONPATH=$(CONFORMANCE)/bootstrap $(PY2) -m virtualenv --quiet $(CONFORMANCE)/venv
	$(CONFORMANCE)/venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r bench/conformance/requirements-py2.txt
	touch $@

# Every group (9 with the size limit raised), ours beside the websockets library: docs/conformance.md.
conformance: install $(CONFORMANCE_STAMP)
	$(BIN)/python -m bench.conformance --full --agents hlgateway,websockets --write docs/conformance.md

# The CI subset (groups 1-7, 10, a slice of 12/13), ours only: fails on any FAILED or NON-STRICT case.
conformance-fast: install $(CONFORMANCE_STAMP)
	$(BIN)/python -m bench.conformance

# Re-pin every dependency to the newest release that pyproject.toml allows.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Pinned dependencies (runtime + dev) for hlgateway. Regenerate: make lock"; \
	  .lockvenv/bin/pip freeze --exclude-editable | grep -iv '^hlgateway'; } > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) $(CONFORMANCE) tests/js/node_modules .mypy_cache .pytest_cache .ruff_cache
	find src -name "*.so" -delete
