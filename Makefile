# Everything a fresh machine needs: `make reproduce` (the main job) and `make test` (the suite).
# Both create the virtual environment in $(VENV) if it is absent and install the project into it.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= output

.PHONY: install reproduce test test-fast benchmark clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m workbench reproduce --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15

benchmark: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
