# Candor: `make demo` runs the whole product, `make test` runs every test.
# Both create .venv and install pinned dependencies on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt | sha1sum | cut -c1-12)
ACCEL := $(VENV)/.accel-$(shell cat feedback/otlp.py feedback/_otlp_wire.c bin/build-accel | sha1sum | cut -c1-12)
PORT ?= 8000
export DJANGO_SETTINGS_MODULE ?= config.settings.dev

.PHONY: install instrumentations migrate demo test test-services browser lint widget bench-ingest bench-otlp bench-ingest-cpu bench-widget bench-ratelimit bench-report bench-judges bench-calibration bench-budget clean stop-db

install: $(STAMP) $(ACCEL)

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	rm -f $(VENV)/.installed-* && touch $@

# The OTLP mapping compiled by mypyc and its C reading of protobuf exports (bin/build-accel; ~25 s), again
# whenever their sources change.
$(ACCEL): $(STAMP)
	$(PY) bin/build-accel
	rm -f $(VENV)/.accel-* && touch $@

migrate: install
	@mkdir -p .var
	$(PY) manage.py migrate_locked -v 0 >.var/migrate.log

demo: migrate
	PORT=$(PORT) $(PY) manage.py demo_setup
	$(PY) manage.py demo_evaluation
	$(PY) manage.py demo_queues
	$(PY) manage.py demo_calibration
	PORT=$(PORT) $(PY) manage.py demo_experiments
	PORT=$(PORT) $(PY) manage.py demo_billing
	PORT=$(PORT) bin/run-demo

test: install browser instrumentations
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest

# The GenAI instrumentations customers run, for the OTLP tests: a virtualenv of their own, since
# their OpenTelemetry pins differ from Candor's (requirements/instrumentations.txt).
INSTRUMENTATIONS := $(VENV)/instrumentations
INSTRUMENTATIONS_STAMP := $(INSTRUMENTATIONS)/.installed-$(shell sha1sum requirements/instrumentations.txt | cut -c1-12)
instrumentations: $(INSTRUMENTATIONS_STAMP)

$(INSTRUMENTATIONS_STAMP): requirements/instrumentations.txt | $(STAMP)
	test -x $(INSTRUMENTATIONS)/bin/python || $(PYTHON) -m venv $(INSTRUMENTATIONS)
	$(INSTRUMENTATIONS)/bin/python -m pip install --quiet -r requirements/instrumentations.txt
	rm -f $(INSTRUMENTATIONS)/.installed-* && touch $@

# The browser tests drive Debian's Chromium (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: sudo apt-get install chromium"; exit 1; fi; }

# Schemathesis alone (every check and phase against the live test server; make test runs it too).
test-contract: install
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest -m contract

# Tests against the machine's own PostgreSQL 15, Redis and RabbitMQ (see .ci/run).
test-services: install
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest -m services

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# django-stubs imports config.settings.test, which needs a DATABASE_URL but never connects to it.
	DATABASE_URL=$${DATABASE_URL:-postgresql://lint@localhost/lint} $(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-cache

bench-ingest: migrate
	$(PY) bench/ingest.py

# The OpenTelemetry SDK exporter's protobuf payloads (GenAI spans, 3 a trace) against the REST batch path.
bench-otlp: migrate
	$(PY) bench/otlp.py

# CPU an item, REST against OTLP, in one process: bench-otlp's figure without the machine's noise.
bench-ingest-cpu: migrate
	$(PY) bench/ingest_cpu.py

# The served widget is the minified build of static/widget/src/candor.js (needs node/npx only
# when the source changes; the build is committed and a test checks it matches the source).
widget: static/widget/candor.js

static/widget/candor.js: static/widget/src/candor.js
	sha=$$(sha256sum $< | cut -c1-16) && { \
	  echo "/*! Candor feedback widget | built from static/widget/src/candor.js sha256:$$sha */"; \
	  npx --yes terser@5.51.2 $< --compress passes=2 --mangle --ecma 2020 --comments false; } > $@.tmp && mv $@.tmp $@

bench-widget: install
	$(PY) bench/widget.py

bench-ratelimit: migrate
	$(PY) bench/ratelimit.py

# REPORT_BENCH_TRACES=10000000 for the issue's 10M (default 1M; loading takes minutes).
bench-report: migrate
	$(PY) bench/report.py

bench-judges: migrate
	$(PY) bench/judges.py

# One judge, 2,000 labels, 1M scored traces: the calibration refresh end to end (BENCH_KEEP=1 reuses the load).
bench-calibration: migrate
	$(PY) bench/calibration.py

stop-db:
	$(PY) -c "from pathlib import Path; from config.embedded_db import stop_embedded_database as s; s(Path('.var/pgdata'))"

clean: stop-db
	rm -rf .var $(VENV)

# Budget checks through the real server while traces land (billing's customer budgets).
bench-budget: migrate
	$(PY) bench/budget.py
