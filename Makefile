# pg_tenancy: the two commands are `make run` (demo) and `make test` (all tests).
.PHONY: run stop test bench install deps lint
SHELL := /bin/bash

run:
	@scripts/demo.sh

stop:
	@scripts/proxy.sh stop
	@scripts/cluster.sh stop

test:
	@scripts/test.sh

bench:
	@scripts/bench.sh

install:
	@scripts/deps.sh && scripts/install.sh

deps:
	@scripts/deps.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
