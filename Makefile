# payops: build, demo, tests, benchmarks.
#
#   make demo     start an emulator, run `payops up --env demo` against it, print the outputs
#   make test     everything CI checks: format, lints, unit + CLI tests, the Lambda handlers'
#                 tests, integration tests on moto and on LocalStack at once (each started
#                 and stopped by this target)
#
# The cargo target dir lives outside the checkout so CI runs and worktrees share it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/payops/target
PAYOPS := $(CARGO_TARGET_DIR)/debug/payops

# `demo` defaults to LocalStack, the emulator the integration tests treat as primary.
EMULATOR ?= localstack
ENV ?= demo
# The test suite starts its own emulators on these ports, away from the defaults
# (4566 / 5055) a developer may already be using.
TEST_PORT_moto ?= 5155
TEST_PORT_localstack ?= 4666

.PHONY: build demo demo-down test lint test-unit test-handlers test-integration emulator-start emulator-stop \
        emulator-install bench bench-engine bench-emulator bench-fleet bench-faults bench-timing test-aws clean-emulators

# Building with --tests gives the binary the same dependency features as the
# test build, so `make test` and `make demo` share one compilation.
build:
	cargo build --tests --bins

demo: build
	@scripts/demo $(EMULATOR) $(ENV)

demo-down: build
	@scripts/demo-down $(EMULATOR) $(ENV)

# The two emulators' suites run at once (scripts/test-emulators says why); each
# line of their output is prefixed with its emulator.
test: lint test-unit test-handlers build
	scripts/test-emulators moto:$(TEST_PORT_moto) localstack:$(TEST_PORT_localstack)

lint:
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings

test-unit:
	cargo nextest run --no-fail-fast

# The Python handlers shipped in the binary (lambda/), with pytest and moto in-process.
test-handlers:
	scripts/test-handlers

test-integration: build
	scripts/test-integration $(EMULATOR) $(TEST_PORT_$(EMULATOR))

emulator-install:
	scripts/emulator install $(EMULATOR)

emulator-start:
	scripts/emulator start $(EMULATOR)

emulator-stop:
	scripts/emulator stop $(EMULATOR)

bench: bench-engine bench-emulator bench-fleet

bench-engine:
	cargo run --quiet --example engine_bench

bench-emulator: build
	scripts/bench $(EMULATOR)

# N envs brought up, then destroy-all against one env's down.
N ?= 4
bench-fleet: build
	scripts/bench-fleet $(EMULATOR) $(N)

# up and down of the full env at AWS's pace (scaled: BENCH_SCALE, default
# 0.05), against the critical path of the graph under the same durations.
bench-timing: build
	scripts/bench-timing $(if $(filter command line,$(origin EMULATOR)),$(EMULATOR),moto)

# up / up again / down through the fault proxy, per seed (SEEDS="1 2 3"),
# on EMULATOR (default moto here); see scripts/bench-faults for the knobs.
bench-faults: build
	scripts/bench-faults $(if $(filter command line,$(origin EMULATOR)),$(EMULATOR),moto) $(SEEDS)

# Opt-in, never in CI: the integration suite against a real AWS account
# (PAYOPS_ACCEPTANCE=1 and credentials; scripts/test-aws refuses otherwise).
test-aws: build
	scripts/test-aws

clean-emulators:
	-scripts/emulator stop moto
	-scripts/emulator stop localstack
	rm -rf .emulators
