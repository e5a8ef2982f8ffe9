# Everything a fresh machine needs: `make reproduce` (the main job) and `make test` (the suite).
# Both create the virtual environment in $(VENV) if it is absent and install the project into it.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= output

.PHONY: install reproduce test chromium benchmark mutation clean

# lxt (test and benchmark only): the AttnLRP authors' package. Its explicit relevance functions
# need only torch; its efficient implementation (the tests' agreement on a torchvision ViT, the
# transformers benchmark's lxt row) also needs Hugging Face transformers. lxt's other declared
# dependencies (bitsandbytes, open_clip, accelerate) are left out.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test,dev]'
	$(PY) -m pip install --no-deps 'lxt==2.1'
	$(PY) -m pip install 'transformers>=4.45,<5'
	touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m workbench reproduce --out $(OUT)

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
chromium:
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) chromium
	$(PY) -m pytest -n 2 --dist loadfile --nbval-lax --durations=15 tests notebooks

# Speed and memory against the peers, Dask throughput; results in benchmarks/results/
# (about 30 minutes). WORKBENCH_SMOKE=1 runs each benchmark on its smallest settings (a check
# that it runs end to end; results in benchmarks/results/quick/); BENCHMARK_OUT=DIR writes the
# results to DIR instead.
SMOKE := $(filter 1,$(WORKBENCH_SMOKE))
BENCHMARK_OUT_FLAG := $(if $(BENCHMARK_OUT),--out $(BENCHMARK_OUT))
benchmark: $(STAMP) chromium
	$(PY) -m benchmarks.run $(if $(SMOKE),--quick --no-memory --only gradient) \
		$(BENCHMARK_OUT_FLAG)
	$(PY) -m benchmarks.metrics $(if $(SMOKE),--quick --no-memory) $(BENCHMARK_OUT_FLAG)
	$(PY) -m benchmarks.composites $(if $(SMOKE),--quick --no-memory) $(BENCHMARK_OUT_FLAG)
	$(PY) -m benchmarks.transformers $(if $(SMOKE),--quick --no-memory --only small_vit) \
		$(BENCHMARK_OUT_FLAG)
	$(PY) -m benchmarks.contract $(if $(SMOKE),--quick --no-memory) $(BENCHMARK_OUT_FLAG)
	$(PY) -m benchmarks.load $(if $(SMOKE),--quick --sessions 1 --changes 1 --no-warmup) \
		$(BENCHMARK_OUT_FLAG)
	$(PY) -m benchmarks.distributed $(if $(SMOKE),--quick) $(BENCHMARK_OUT_FLAG)

# Mutation testing: one-line bugs applied to a temporary copy, each mutant's tests run there
# (about 45 minutes; not part of `make benchmark`): benchmarks/results/mutation.md
mutation: $(STAMP)
	$(PY) -m benchmarks.mutation

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
