# Two commands on a fresh machine: `make serve` and `make test`. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tests/js/node_modules/.installed

.PHONY: install serve test lint typecheck pytest lock clean

install: $(STAMP) $(NODE_STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The seed's JavaScript client is tested under Node with the npm `ws` package.
$(NODE_STAMP): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --silent --no-audit --no-fund
	touch $@

serve: install
	$(BIN)/hlgateway serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

# Re-pin every dependency to the newest release that pyproject.toml allows.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Pinned dependencies (runtime + dev) for hlgateway. Regenerate: make lock"; \
	  .lockvenv/bin/pip freeze --exclude-editable | grep -iv '^hlgateway'; } > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) tests/js/node_modules .mypy_cache .pytest_cache .ruff_cache
