# One command runner for developers and CI.
#   make run    install what is missing, build, run `mesos-stateful dev`
#   make test   install what is missing, then every check and every test
SHELL := /bin/bash
CARGO ?= cargo
DATA_DIR ?= .data

.PHONY: deps build run test lint invariants unit fmt

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

run: build
	RUST_LOG=$${RUST_LOG:-info} ./target/debug/mesos-stateful dev --data-dir $(DATA_DIR)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

invariants:
	scripts/check-invariants.sh

# The end-to-end tests run the workspace's binaries: build them first.
unit:
	$(CARGO) build --workspace --bins
	$(CARGO) nextest run --workspace --no-fail-fast

test: deps lint invariants unit
