# Two commands do all the set-up: `make run` (train the default experiment) and `make test`.
# Both create .venv and install dlexp into it when needed. `make test-all` runs the whole suite (CI).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: install run test test-all lint docs docs-outputs bench bench-gpu gpu-check clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Train the default experiment (MLP on the bundled digits); extra overrides via ARGS="model=softmax ...".
run: $(STAMP)
	@start=$$(date +%s%N); \
	$(PY) -m dlexp $(ARGS) || exit $$?; \
	ms=$$(( ($$(date +%s%N) - start) / 1000000 )); \
	echo "make run: finished in $$((ms / 1000)).$$(printf %03d $$((ms % 1000))) s wall time"

# The tests in two tiers (docs/contributing.md). The linter runs first: an undefined name fails the build
# before any test does. `make test` is the fast tier: every test but those marked slow (full grids, the
# course's sweeps, the model zoo, kill and signal matrices) or services (PostgreSQL, SLURM, torchrun,
# several search workers). `make test-all` runs them all, as CI does. Both list the 15 slowest tests.
FAST_TIER := not slow and not services
PYTEST := $(PY) -m pytest -q -n auto --durations=15

test: lint
	$(PYTEST) -m "$(FAST_TIER)" $(PYTEST_ARGS)

test-all: lint
	$(PYTEST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks docs

# The documentation site, from the Markdown pages in docs/ into docs/_build/html. Any warning (a broken
# link, a reference to nothing, a missing include) fails the build.
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs in docs/_build/html/index.html"

# Run every command whose output the docs show, and write that output to docs/_generated/ (and the
# README's generated blocks), with the machine it ran on. A few minutes on 2 cores.
docs-outputs: $(STAMP)
	$(PY) docs/generate_outputs.py $(DOCS_OUTPUTS_ARGS)

# Benchmarks (not part of the tests): the data path (BENCH_ARGS="--model lenet --repeats 3"), the whole
# epoch against a bare loop, MLP and LeNet (EPOCH_BENCH_ARGS="--model mlp --repeats 7"), then a 16-job
# sweep against a bare loop over the same configs, default launcher and slots (SWEEP_BENCH_ARGS="--repeats 3"),
# recorded in docs/benchmarks/bench_sweep.txt for the benchmarks page.
bench: $(STAMP)
	$(PY) benchmarks/bench_data.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_epoch.py $(EPOCH_BENCH_ARGS)
	$(PY) benchmarks/bench_sweep.py --slots --record docs/benchmarks/bench_sweep.txt $(SWEEP_BENCH_ARGS)

# GPU benchmark: images/s and MFU for ResNet-18 and LeNet, eager / bf16 / bf16+compile (skips without a GPU).
bench-gpu: $(STAMP)
	$(PY) benchmarks/bench_gpu.py $(BENCH_ARGS)

# Everything that needs a GPU: the CUDA tests, the GPU benchmark and a timed translation preset (log in outputs/).
gpu-check: $(STAMP)
	PYTHON=$(PY) bash benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
