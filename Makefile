# `make dev` installs and runs the whole stack; `make test` runs linters and the tests.
SHELL := /bin/bash
# The newest Python the project supports (requires-python in pyproject.toml) that runs on
# this machine; `make PYTHON=/path/to/python3.12 dev` picks another.
SUPPORTED_PYTHONS := 3.13 3.12 3.11
PYTHON ?= $(firstword $(foreach version,$(SUPPORTED_PYTHONS),\
	$(shell python$(version) -c "" >/dev/null 2>&1 && command -v python$(version))))
VENV := .venv
BIN := $(VENV)/bin
TEST_ENV := DJANGO_SETTINGS_MODULE=tests.settings

.PHONY: dev install test test-cluster lint check-test-services bench soak screenshots lock clean

# Django reads .env itself, and the environment wins over it (CELERY_BROKER_URL=amqp://...
# make dev); honcho is told not to load .env on top of the environment. The web server
# and Flower listen on loopback only: the dev login is public.
dev: install .env
	@$(BIN)/python manage.py check_services
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py sync_schedules
	@$(BIN)/python manage.py dev_superuser
	@echo "web    http://localhost:8000/admin/"
	@echo "flower http://localhost:5555/  (login: FLOWER_BASIC_AUTH in .env)"
	PATH="$(CURDIR)/$(BIN):$$PATH" GUNICORN_CMD_ARGS="--bind=127.0.0.1:8000" \
		$(BIN)/honcho start --env /dev/null --port 8000

install: $(VENV)/.installed

$(VENV)/.installed: requirements/dev.lock
	@test -n "$(PYTHON)" || { echo "No Python $(SUPPORTED_PYTHONS) found: install one" \
		"(Debian: apt install python3; elsewhere python.org), or set PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.lock
	touch $@

.env:
	cp .env.example .env

# Every test on Redis (the fault tests on both brokers), then the tests that cross the
# broker through real workers again with RabbitMQ as the broker (the `broker` marker).
RABBITMQ_TEST_ENV := $(TEST_ENV) CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/template-test \
	REDIS_URL=redis://127.0.0.1:6379/15

test: install lint check-test-services
	$(TEST_ENV) $(BIN)/pytest -m "not cluster"
	$(RABBITMQ_TEST_ENV) $(BIN)/pytest -m broker --ignore=tests/faults -p no:cacheprovider

# The fault tests on servers of their own that outgrow one: a three-node RabbitMQ cluster
# (a node killed, partitioned away and healed, restarted in turn), a Redis primary with a
# replica and three Sentinels, and a worker whose host is cut off (about 7 minutes).
test-cluster: install check-test-services
	$(TEST_ENV) $(BIN)/pytest -m cluster tests/faults -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/hadolint docker/Dockerfile
	$(BIN)/shellcheck .ci/run

# Every benchmark against plain Celery, then one table (bench/results/bench.json).
# Needs the same services as the tests; takes about 15 minutes on 2 cores.
bench: install check-test-services
	$(BIN)/python -m bench

# Jobs and emails through both pools for SOAK_MINUTES while workers, Redis and PostgreSQL
# are killed at random (private servers); prints the ledger, fails on any loss or double.
# SOAK_SETUP=sentinel (Redis failing over) or rabbitmq-cluster (nodes killed, a worker's
# host cut off) runs it beyond one host (tests/faults/soak.py).
SOAK_MINUTES ?= 10
SOAK_SETUP ?= one-host
soak: install check-test-services
	$(TEST_ENV) $(BIN)/python -m tests.faults.soak --minutes $(SOAK_MINUTES) \
		--setup $(SOAK_SETUP)

# The browser tests of the dead-letter pages, saving their screenshots for the README.
screenshots: install check-test-services
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(TEST_ENV) $(BIN)/pytest \
		workers/dead_letters/tests/test_browser.py workers/ops/tests/test_console_fleet.py

check-test-services: install
	@$(TEST_ENV) $(BIN)/python manage.py check_services
	@$(TEST_ENV) CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672// \
		$(BIN)/python manage.py check_services

# Re-pin every dependency after editing pyproject.toml (needs network access to PyPI): one
# lock for every supported Python, each package with the hashes of all its files.
lock: install
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
		--no-header --quiet -o requirements/base.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--generate-hashes --no-header --quiet -o requirements/dev.lock

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
