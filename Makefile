# Two commands: `make run` (serve the site on SQLite with the sandbox gateway and demo cards)
# and `make test`. Both build .venv from the pinned requirements first.
PYTHON ?= python3
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run lint test bench bench-scale soak translations translations-hant clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	HEYON_PROVIDERS=$${HEYON_PROVIDERS-sandbox} HEYON_SANDBOX_SECRET=$${HEYON_SANDBOX_SECRET-local-sandbox-secret} \
	  sh -c '$(BIN)/flask db upgrade && $(BIN)/flask seed-demo && $(BIN)/flask faq seed || exit 1; \
	  $(BIN)/flask outbox work & worker=$$!; trap "kill $$worker 2>/dev/null" EXIT INT TERM; \
	  echo "Serving on http://127.0.0.1:$(PORT)"; echo "Delivering messages to customers (flask outbox work) beside it"; \
	  $(BIN)/gunicorn -c gunicorn.conf.py -b 127.0.0.1:$(PORT) wsgi:app'

# ruff (lint and format) on the site, migrations and entry points; mypy --strict on heyon_site/.
# Settings: pyproject.toml.
lint: $(VENV)/.dev
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/python -m mypy --strict heyon_site

test: $(VENV)/.dev lint
	$(BIN)/pytest -n 2

# Throughput, latency, page weight and Lighthouse on this machine (a few minutes; not part of
# `make test`). Also on PostgreSQL when BENCH_DATABASE_URL or TEST_DATABASE_URL is set. Results:
# bench/results/latest.md and .json; README "Benchmarks" explains them. Then a batch of 100,000
# vouchers made and exported (bench/vouchers.py: time and peak memory). Then the password spray
# (bench/spray.py, about 90 s; BENCH_SPRAY=0 skips it). BENCH_SCALE=1 adds bench-scale.
bench: $(VENV)/.runtime
	$(BIN)/python bench/run.py
	$(BIN)/python bench/vouchers.py
	$(if $(filter 0,$(BENCH_SPRAY)),,$(BIN)/python bench/spray.py)
	$(if $(filter 1,$(BENCH_SCALE)),$(BIN)/python bench/scale.py)

# The same lookups and staff searches at 10,000 and at 1,000,000 cards (SCALE_CARDS; 10 to 11
# minutes on 2 cores with PostgreSQL too), their ratio and query plans: bench/results/scale-latest.md and .json.
bench-scale: $(VENV)/.runtime
	$(BIN)/python bench/scale.py

# Mixed traffic for SOAK_SECONDS (default 120) per backend with SOAK_CLIENTS (default 8), then the
# ledger invariants: SQLite with 4 workers, and PostgreSQL with two servers when BENCH_DATABASE_URL
# or TEST_DATABASE_URL is set. Needs Redis (SOAK_REDIS_URL). Fails on any 5xx or broken invariant.
# Results: bench/results/soak-latest.md and .json.
soak: $(VENV)/.runtime
	$(BIN)/python bench/soak.py

# After changing user-visible text: extract it, merge into the catalog, translate, compile.
# Only zh_Hans is merged: zh_Hant is made from it (translations-hant) before the compile.
translations: $(VENV)/.dev
	$(BIN)/pybabel extract -F babel.cfg -k _l --omit-header --no-location -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations -l zh_Hans --no-fuzzy-matching --ignore-obsolete
	$(BIN)/python -m heyon_site.web.hant_catalog
	$(BIN)/pybabel compile -d translations

# Traditional Chinese, written again from zh_Hans through OpenCC and the reviewed wording in
# heyon_site/web/hant_overrides.txt (.po and .mo; a second run changes nothing). Run it after
# adding zh_Hans entries; README "Traditional Chinese".
translations-hant: $(VENV)/.runtime
	$(BIN)/python -m heyon_site.web.hant_catalog

clean:
	rm -rf $(VENV) instance/heyon.db*
