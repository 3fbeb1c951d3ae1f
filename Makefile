# tact: `make demo` runs everything in one process; `make test` runs every test.
# Build output lives outside the source tree so fresh clones reuse it.
CARGO_TARGET_DIR ?= $(HOME)/.cache/tact/target
export CARGO_TARGET_DIR
TACT_DEBUG := $(CARGO_TARGET_DIR)/debug/tact
TACT_RELEASE := $(CARGO_TARGET_DIR)/release/tact
DURATION ?=
PYTHON ?= python3

.PHONY: demo test unit e2e bench deps test-deps build check-core lint fmt

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

build: deps
	cargo build -p tact

## The main job on an embedded broker. `make demo DURATION=30s` stops by itself.
demo: build
	$(TACT_DEBUG) demo $(if $(DURATION),--duration $(DURATION),)

## Everything: unit and property tests, the core's dependency rule, end-to-end tests on tansu.
test: test-deps check-core unit e2e

unit: deps
	cargo test --workspace --no-fail-fast

e2e: test-deps build
	TACT_BIN=$(TACT_DEBUG) $(PYTHON) -m pytest tests/e2e -q -ra

## The decision core must stay pure: no async runtime, Kafka client or storage engine.
check-core:
	@bad=$$(cargo tree -p tact-core -e normal --prefix none 2>/dev/null | grep -E '^(tokio|rdkafka|rdkafka-sys|rocksdb|librocksdb-sys) ' || true); \
	if [ -n "$$bad" ]; then echo "tact-core depends on: $$bad"; exit 1; else echo "tact-core is pure (no tokio/rdkafka/rocksdb)"; fi

## Throughput per CPU-second, as ratios against limits measured in the same run:
## the engine against raw RocksDB (1M customers, warm state), then tact against a Quix Streams
## peer end to end on one tansu broker. Release profile (a separate build from the tests').
bench: test-deps
	python3 -m pip install -q -r bench/requirements.txt
	cargo build --release -p tact -p tact-bench
	mkdir -p bench/results
	$(CARGO_TARGET_DIR)/release/tact-bench --json bench/results/engine.json $(ENGINE_ARGS)
	$(PYTHON) bench/e2e_bench.py --tact-bin $(TACT_RELEASE) --json bench/results/e2e.json $(BENCH_ARGS)

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
