# Two commands: `make run` (serve the site on SQLite with the sandbox gateway and demo cards)
# and `make test`. Both build .venv from the pinned requirements first.
PYTHON ?= python3
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test translations clean

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
	  sh -c '$(BIN)/flask db upgrade && $(BIN)/flask seed-demo && $(BIN)/flask faq seed && \
	  echo "Serving on http://127.0.0.1:$(PORT)" && \
	  exec $(BIN)/gunicorn -c gunicorn.conf.py -b 127.0.0.1:$(PORT) wsgi:app'

test: $(VENV)/.dev
	$(BIN)/pytest -n 2

# After changing user-visible text: extract it, merge into the catalog, translate, compile.
translations: $(VENV)/.dev
	$(BIN)/pybabel extract -F babel.cfg -k _l --omit-header --no-location -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d translations

clean:
	rm -rf $(VENV) instance/heyon.db*
