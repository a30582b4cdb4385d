# TinyKV in Rust: one target per lab, plus run / test / handout / verify /
# docs / fmt / lint. `make help` lists them.
#
# Lab targets take optional variables:
#   make project2b TEST=persist_partition_2b SEED=8129   # replay one run
#   make project2b SEEDS=20                              # every test, 20 seeds

CARGO ?= cargo
LABS   = $(CARGO) run --quiet -p labs --
ADDR  ?= 127.0.0.1:20160
DATA  ?= ./data
STAGE ?=
OUT   ?= target/handout/$(or $(STAGE),1)
# Where cargo puts binaries (honours CARGO_TARGET_DIR).
BIN    = $(or $(CARGO_TARGET_DIR),target)/debug

LAB_ARGS = $(if $(TEST),--test $(TEST)) $(if $(SEED),--seed $(SEED)) $(if $(SEEDS),--seeds $(SEEDS))

LAB_TARGETS = project1 project2 project2a project2aa project2ab project2ac project2b project2c \
              project3 project3a project3b project3c project4 project4a project4b project4c

.PHONY: help run build cluster cluster-stop cluster-status test test-workspace handout verify grade mutants docs fmt lint bench bench-cluster clean $(LAB_TARGETS)

help:
	@echo "make run                 build and start tinykv-server --standalone on $(DATA) at $(ADDR)"
	@echo "make cluster             build and start a scheduler and 3 stores on loopback (data in data/cluster)"
	@echo "make cluster-stop        stop them (make cluster-status: what runs)"
	@echo "make test                workspace tests (and the 2b and 2c suites on fjall), then 'labs verify'"
	@echo "make project1 ... project4c   a lab's graded suite (TEST=name SEED=n SEEDS=k)"
	@echo "make handout STAGE=1 [OUT=dir]   the student repository up to a lab"
	@echo "make verify [STAGE=lab]  build the handout and check that every graded test fails on the stubs"
	@echo "make grade [SUBMISSION=dir] [STAGE=lab] [FORMAT=table|json|junit|gradescope] [REPORT=file] [SEEDS=k]"
	@echo "                         score labs: this tree, or a submission laid over the official one"
	@echo "make mutants LAB=2aa [SAMPLE=n] [SEED=s] [FORMAT=table|json] [REPORT=file]"
	@echo "                         mutation testing of a lab's solution regions against its graded tests"
	@echo "make bench-cluster [BENCH_ARGS='--requests 20000']"
	@echo "                         3 stores beside 3 etcd members (if etcd is on PATH), then 1 beside 1"
	@echo "make docs | fmt | lint | bench | clean"

build:
	$(CARGO) build -p tinykv-server -p tinykv-ctl

run: build
	@echo
	@echo "Starting tinykv-server (standalone) with data in $(DATA), listening on $(ADDR)."
	@echo "Stop it with Ctrl-C. In another terminal, talk to it with tinykv-ctl:"
	@echo "  $(BIN)/tinykv-ctl --addr $(ADDR) raw put hello world"
	@echo "  $(BIN)/tinykv-ctl --addr $(ADDR) raw get hello"
	@echo "  $(BIN)/tinykv-ctl --addr $(ADDR) raw scan --limit 10"
	@echo "  $(BIN)/tinykv-ctl --addr $(ADDR) raw delete hello"
	@echo "  $(BIN)/tinykv-ctl --addr $(ADDR) txn put k1 v1 k2 v2"
	@echo "  $(BIN)/tinykv-ctl --addr $(ADDR) txn get k1"
	@echo "  $(BIN)/tinykv-ctl --addr $(ADDR) txn scan"
	@echo
	$(BIN)/tinykv-server --standalone --data-dir $(DATA) --addr $(ADDR)

cluster:
	$(CARGO) build -p tinykv-server -p tinykv-ctl -p tinykv-scheduler-server
	BIN=$(BIN) scripts/cluster.sh start

cluster-stop:
	scripts/cluster.sh stop

cluster-status:
	scripts/cluster.sh status

test: test-workspace verify

test-workspace:
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc
	@echo "lab 2b and 2c suites once more, on fjall engines instead of memory disks:"
	TINYKV_SIM_ENGINE=fjall $(CARGO) test --workspace --test project2b --test project2c

$(LAB_TARGETS):
	$(LABS) test $(patsubst project%,%,$@) $(LAB_ARGS)

handout:
	$(LABS) handout --stage $(or $(STAGE),1) --out $(OUT) --force

verify:
	$(LABS) verify $(if $(STAGE),--stage $(STAGE))

grade:
	$(LABS) grade $(if $(SUBMISSION),--submission $(SUBMISSION)) $(if $(STAGE),--stage $(STAGE)) \
	  $(if $(FORMAT),--format $(FORMAT)) $(if $(REPORT),--out $(REPORT)) \
	  $(if $(SEED),--seed $(SEED)) $(if $(SEEDS),--seeds $(SEEDS))

SAMPLE ?=
mutants:
	@test -n "$(LAB)" || { echo "make mutants needs LAB=<lab id>, e.g. make mutants LAB=2aa SAMPLE=30"; exit 2; }
	@command -v cargo-mutants >/dev/null 2>&1 || { echo "installing cargo-mutants 27.1.0 (once)"; \
	  $(CARGO) install --locked cargo-mutants --version 27.1.0; }
	$(LABS) mutants --lab $(LAB) $(if $(SAMPLE),--sample $(SAMPLE)) $(if $(SEED),--seed $(SEED)) \
	  $(if $(FORMAT),--format $(FORMAT)) $(if $(REPORT),--out $(REPORT))

docs:
	$(CARGO) doc --workspace --no-deps
	@if command -v mdbook >/dev/null 2>&1; then mdbook build docs; \
	else echo "mdbook is not installed ('cargo install mdbook' renders docs/ as a book); docs/src/*.md read fine as plain Markdown."; fi

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Closed-loop clients against 3 tinykv-server processes and, when `etcd` is
# on PATH, against a 3-member etcd in the same run; then the put row on one
# node (standalone server beside a single etcd). Release build.
bench-cluster:
	$(CARGO) build --release -p tinykv-server -p tinykv-bench
	$(or $(CARGO_TARGET_DIR),target)/release/tinykv-bench $(BENCH_ARGS)
	$(or $(CARGO_TARGET_DIR),target)/release/tinykv-bench --stores 1 --workloads put --clients 64 $(BENCH_ARGS)

bench:
	$(CARGO) bench -p raft --bench commit_throughput
	$(CARGO) bench -p tinykv-storage --bench write_durability
	$(CARGO) bench -p tinykv-sim --bench sim_speed
	$(CARGO) bench -p tinykv-server --bench raw_get_latency

clean:
	$(CARGO) clean
