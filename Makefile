# tact: `make demo` runs everything in one process; `make test` runs every test.
# Build output lives outside the source tree so fresh clones reuse it.
CARGO_TARGET_DIR ?= $(HOME)/.cache/tact/target
export CARGO_TARGET_DIR
TACT_DEBUG := $(CARGO_TARGET_DIR)/debug/tact
TACT_RELEASE := $(CARGO_TARGET_DIR)/release/tact
TACT_FAILPOINTS := $(CARGO_TARGET_DIR)/debug/tact-failpoints
DURATION ?=
PYTHON ?= python3

.PHONY: demo test unit e2e faults build-failpoints fuzz bench bench-smoke bench-deps deps test-deps build check-core lint fmt

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

build: deps
	cargo build -p tact

## The main job on an embedded broker. `make demo DURATION=30s` stops by itself.
demo: build
	$(TACT_DEBUG) demo $(if $(DURATION),--duration $(DURATION),)

## Everything: unit and property tests, the core's dependency rule, formatting and clippy,
## a short fuzzing run, end-to-end tests on tansu, the fault matrix in its quick form, and the
## benchmark drivers on tiny sizes.
test: test-deps check-core unit lint
	$(MAKE) fuzz FUZZ_SECONDS=3
	$(MAKE) e2e
	$(MAKE) faults FAULTS_ARGS=--quick
	$(MAKE) bench-smoke

unit: deps
	cargo test --workspace --no-fail-fast

## Mutation fuzzing of every decoder (click events, commands, releases, stored state, the policy
## file) from the corpus in fuzz/corpus/, FUZZ_SECONDS per target (`cargo test` runs 1 s each).
## A failure prints TACT_FUZZ_SEED=... to replay it.
FUZZ_SECONDS ?= 60
fuzz: deps
	TACT_FUZZ_SECONDS=$(FUZZ_SECONDS) cargo test -p tact-codec --test fuzz -- --nocapture

e2e: test-deps build
	TACT_BIN=$(TACT_DEBUG) $(PYTHON) -m pytest tests/e2e -q -ra

## tact with crash points between its commit steps (a build of its own, as tact-failpoints; the
## plain binary is built again after it, so both stay side by side).
build-failpoints: deps
	cargo build -p tact --features failpoints
	cp -f $(TACT_DEBUG) $(TACT_FAILPOINTS)
	cargo build -p tact

## The fault matrix (tests/faults/README.md): kill -9 at random and at every commit step, a lost
## disk, a second instance, broker freeze and restart, a full disk, SIGTERM with a frozen broker,
## poison, oversized, duplicated, reordered and forged input, each compared with a straight run.
## A table of lost / extra / changed / state; fails unless all are 0. `FAULTS_ARGS=--quick` is
## the reduced form `make test` runs; `FAULTS_ARGS="--only 'broker frozen'"` picks rows.
FAULTS_ARGS ?=
faults: test-deps build-failpoints
	$(PYTHON) tests/faults/matrix.py --tact-bin $(TACT_FAILPOINTS) $(FAULTS_ARGS)

## The decision core must stay pure: no async runtime, Kafka client or storage engine.
check-core:
	@bad=$$(cargo tree -p tact-core -e normal --prefix none 2>/dev/null | grep -E '^(tokio|rdkafka|rdkafka-sys|rocksdb|librocksdb-sys) ' || true); \
	if [ -n "$$bad" ]; then echo "tact-core depends on: $$bad"; exit 1; else echo "tact-core is pure (no tokio/rdkafka/rocksdb)"; fi

## Throughput per CPU-second, as ratios against limits measured in the same run:
## the engine against raw RocksDB (1M customers, warm state), then tact against a Quix Streams
## peer end to end on one tansu broker (both with their changelogs on), then tact's restore of that
## state into an empty instance and its rebalance pauses (join, kill -9, SIGTERM) under live input.
## Release profile (a separate build from the tests'). bench/README.md explains every figure.
## `make bench BENCH_ARGS="--prefill-customers 1000000"`: the same with the state of 1M customers.
BENCH_VENV ?= $(HOME)/.cache/tact/bench-venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_SMOKE_DIR := $(CARGO_TARGET_DIR)/bench-smoke

## The benchmark's Python packages in a virtualenv layered on the system's: quixstreams pins
## confluent-kafka 2.12.x, and the e2e tests keep whatever the system has.
bench-deps: test-deps
	@test -x $(BENCH_PY) || $(PYTHON) -m venv --system-site-packages $(BENCH_VENV) \
		|| $(PYTHON) -m venv --system-site-packages --without-pip $(BENCH_VENV)
	@$(BENCH_PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt

bench: bench-deps
	cargo build --release -p tact -p tact-bench
	mkdir -p bench/results
	$(CARGO_TARGET_DIR)/release/tact-bench --json bench/results/engine.json $(ENGINE_ARGS)
	$(BENCH_PY) bench/e2e_bench.py --tact-bin $(TACT_RELEASE) --engine-json bench/results/engine.json \
		--json bench/results/e2e.json $(BENCH_ARGS)

## The same drivers on the debug build with tiny sizes (about 1.5 minutes): every figure must be
## produced (no timing assertions), so the benchmark cannot rot unnoticed.
bench-smoke: bench-deps build
	cargo build -p tact-bench
	mkdir -p $(BENCH_SMOKE_DIR)
	$(CARGO_TARGET_DIR)/debug/tact-bench --customers 2000 --events 5000 --json $(BENCH_SMOKE_DIR)/engine.json
	$(BENCH_PY) bench/e2e_bench.py --smoke --tact-bin $(TACT_DEBUG) \
		--engine-json $(BENCH_SMOKE_DIR)/engine.json --json $(BENCH_SMOKE_DIR)/e2e.json

## Formatting and clippy with warnings as errors (also part of `make test`).
lint: deps
	@cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 || rustup component add rustfmt clippy
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p tact-edge --features failpoints -- -D warnings

fmt:
	cargo fmt --all
