# duckspread build. `make` builds build/duckspread; `make test` runs every
# test; `make run` sets up and serves the demo; `make bench` measures.
# SANITIZE=address,undefined builds into build-san/ with sanitizers;
# SANITIZE=thread (ThreadSanitizer, which cannot share a build with ASan)
# into build-tsan/.

CC ?= cc
SANITIZE ?=
V ?= 0
DUCKDB_DIR ?= $(CURDIR)/.deps/duckdb
ifeq ($(SANITIZE),)
BUILD ?= build
OPT ?= -O2 -g
else ifeq ($(SANITIZE),thread)
BUILD ?= build-tsan
OPT ?= -O1 -g -fno-omit-frame-pointer -fsanitize=thread
# Suppressions only for races inside libraries that are not built with
# TSan (tests/tsan.supp says why each one is not ours); a report makes the
# process exit with 66 when it ends, and the logs are searched as well.
export TSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/tsan.supp second_deadlock_stack=1 \
    history_size=4
else
BUILD ?= build-san
OPT ?= -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
# Every test's process reports what the sanitizers find (leaks at exit
# included) and exits non-zero; UBSan prints where.
export ASAN_OPTIONS ?= detect_leaks=1
export UBSAN_OPTIONS ?= print_stacktrace=1
endif
# Extra arguments of tests/blackbox.sh (node --test), e.g. a test file.
BLACKBOX_ARGS ?=

PKGS := json-c hiredis libmicrohttpd openssl libzstd
WARN := -std=c11 -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wshadow \
        -Wno-missing-field-initializers -Werror
CPPFLAGS += -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Isrc -isystem $(DUCKDB_DIR) \
            $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PKGS) 2>/dev/null))
CFLAGS += $(WARN) $(OPT) -MMD -MP
LDFLAGS += $(OPT) -L$(DUCKDB_DIR) -Wl,-rpath,$(DUCKDB_DIR)
LDLIBS += -lduckdb $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lwslay -lpthread -lm
# The server's allocator is jemalloc (Debian's libjemalloc-dev): with
# glibc's, malloc was a quarter of the writer thread's time (its per-thread
# heaps grown and trimmed again with every batch), and the server spent
# 25% more CPU per edit. Not in the sanitizer builds: their runtimes bring
# their own allocator.
ifeq ($(SANITIZE),)
BIN_LIBS := -ljemalloc
endif

SRC := $(wildcard src/*.c)
# The command line's own files (main.c; cli_backup.c, the one libcurl user)
# are the binary's only: the tests link the rest.
CLI_SRC := src/main.c src/cli_backup.c
LIB_OBJ := $(patsubst src/%.c,$(BUILD)/src/%.o,$(filter-out $(CLI_SRC),$(SRC)))
MAIN_OBJ := $(patsubst src/%.c,$(BUILD)/src/%.o,$(CLI_SRC))
# duckspread backup asks the server over HTTP (Debian's libcurl4-openssl-dev).
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null)
BIN := $(BUILD)/duckspread

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# Helpers shared by unit tests (reference implementations, fixtures).
UNIT_LIB_SRC := $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c))
UNIT_LIB_OBJ := $(patsubst tests/unit/%.c,$(BUILD)/tests/%.o,$(UNIT_LIB_SRC))
TEST_LIBS := $(shell pkg-config --libs check 2>/dev/null) -lgmp

# libFuzzer targets (tests/fuzz/), built with clang into build-fuzz/.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_BUILD ?= build-fuzz
FUZZ_OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
            -fno-sanitize-recover=all
FUZZ_TIME ?= 40

BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
# Helpers shared by the bench programs (bench/bench_lib.h; bench/bench_net.h
# for those that talk to a server).
BENCH_LIB_OBJ := $(BUILD)/bench/lib.o $(BUILD)/bench/net.o

DEPS_STAMP := .deps/.checked
# npm ci writes node_modules/.package-lock.json; the rule touches it after.
NODE_STAMP := node_modules/.package-lock.json
DBQUERY := $(BUILD)/tests/dbquery

# `make V=1` shows the whole compiler command lines.
ifeq ($(V),1)
Q :=
say := @true
else
Q := @
say := @echo
endif

.SECONDARY:
.PHONY: all deps test unit-test cli-test lint-openapi blackbox-test postman-test browser-test run bench \
        bench-spread bench-group bench-e2e bench-replica bench-redis-wait bench-cluster bench-engine bench-floor bench-soak \
        bench-gates clean \
        bench-backup \
        format format-check fuzz fuzz-build fuzz-bins \
        sanitize-test tsan-test tsan-run valgrind-unit
all: $(BIN)

# Installs Debian packages and fetches DuckDB when missing (scripts/deps.sh).
deps:
	@./scripts/deps.sh
	@mkdir -p .deps && touch $(DEPS_STAMP)

$(DEPS_STAMP): scripts/deps.sh
	@./scripts/deps.sh
	@mkdir -p .deps && touch $@

# The npm packages of package-lock.json (docs bundle, linters, test clients).
$(NODE_STAMP): package.json package-lock.json | $(DEPS_STAMP)
	$(say) "  NPM     ci"
	$(Q)npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(BUILD)/src/%.o: src/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/unit/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/fuzz/%.o: tests/fuzz/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/bench/%.o: bench/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BIN): $(MAIN_OBJ) $(LIB_OBJ)
	$(say) "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CURL_LIBS) $(BIN_LIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(UNIT_LIB_OBJ) $(LIB_OBJ)
	$(say) "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LIBS) $(LDLIBS)

$(BUILD)/tests/tools/%.o: tests/tools/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(DBQUERY): $(BUILD)/tests/tools/dbquery.o $(LIB_OBJ)
	$(say) "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/fuzz_%.o $(LIB_OBJ)
	$(say) "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ -lgmp $(LDLIBS)

$(BUILD)/bench/bench_%: $(BUILD)/bench/bench_%.o $(BENCH_LIB_OBJ) $(LIB_OBJ)
	$(say) "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit-test: $(UNIT_BIN) $(BIN)
	@./tests/run_unit.sh $(BUILD) $(UNIT_BIN)

cli-test: $(BIN)
	@./tests/cli.sh $(BIN)

# The OpenAPI document under Redocly's rules (tests/lint-openapi.sh).
lint-openapi: $(NODE_STAMP)
	@./tests/lint-openapi.sh

# Node.js tests of the real binary against real redis-servers; every
# response checked against web/openapi.json (tests/blackbox.sh).
blackbox-test: $(BIN) $(DBQUERY) $(NODE_STAMP)
	@./tests/blackbox.sh $(BIN) $(BLACKBOX_ARGS)

# The Postman collection with newman against a served demo.
postman-test: $(BIN) $(NODE_STAMP)
	@./tests/postman-test.sh $(BIN)

# The grid page at / in Debian's chromium, driven by playwright-core: two
# users' browsers, edits, holds, refusals, a viewer, a restart, and the page's
# frame time under bench_load at 200 edits/s (tests/browser.sh; about a
# minute; screenshots in build/browser/). Not in the sanitizer or valgrind
# runs: the page is what it tests, and their budgets are spent.
browser-test: $(BIN) $(BUILD)/bench/bench_load $(NODE_STAMP)
	@./tests/browser.sh $(BIN)

# rediss://, passwords and the start check against a real TLS-only
# redis-server with a throwaway CA (tests/blackbox/redis-security.test.mjs);
# blackbox-test runs it too, so `make test` does.
.PHONY: redis-security-test
redis-security-test: $(BIN) $(NODE_STAMP)
	@DS_BIN=$(CURDIR)/$(BIN) node --test --test-reporter=spec tests/blackbox/redis-security.test.mjs

# A local Redis Cluster (scripts/redis-cluster.sh), plain and with --tls
# --acl: keys on three primaries, a failover, a slot resharded
# (tests/cluster-smoke.sh; about 40 s).
.PHONY: cluster-smoke cluster-test
cluster-smoke:
	@./tests/cluster-smoke.sh

# duckspread on local clusters: the script's smoke test, then the black-box
# files cluster and cluster-cases (make test runs those two as well).
cluster-test: $(BIN) $(DBQUERY) $(NODE_STAMP)
	@./tests/cluster-smoke.sh
	@./tests/blackbox.sh $(BIN) tests/blackbox/cluster.test.mjs tests/blackbox/cluster-cases.test.mjs

test: unit-test cli-test lint-openapi blackbox-test postman-test browser-test

# The unit, command-line, black-box and Postman tests against the
# ASan + UBSan build in build-san/; then no server log of the black-box and
# Postman runs may hold a sanitizer report (a server that was killed or
# whose exit code a test does not check). Left out of the black-box files,
# for the run's 10 minutes: replica and balancer (the follower's paths run
# in standby), cluster (failovers and reshards; the bus's cluster paths run
# in cluster-cases) and redis-failover (its primaries and replicas killed;
# the writer's recovery paths run in publish and crash).
SAN_BLACKBOX := $(filter-out %/replica.test.mjs %/balancer.test.mjs %/cluster.test.mjs \
                  %/redis-failover.test.mjs, \
                  $(wildcard tests/blackbox/*.test.mjs))
sanitize-test:
	@$(MAKE) --no-print-directory SANITIZE=address,undefined unit-test cli-test postman-test
	@$(MAKE) --no-print-directory SANITIZE=address,undefined blackbox-test \
	    BLACKBOX_ARGS="$(SAN_BLACKBOX)"
	@! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' tests/tmp/blackbox/*.log \
	    tests/tmp/postman/*.log 2>/dev/null || { echo "sanitize-test: reports in the logs above"; \
	    exit 1; }
	@echo "sanitize-test: no sanitizer report"

# The unit tests that start threads (the persister, the live feed, the
# log) and the black-box files that drive every server thread against the
# ThreadSanitizer build in build-tsan/ (tests/tsan-test.sh says which files
# and why); fails on a failing test or any TSan report. The other unit
# tests are single-threaded: TSan has nothing to find in them, and the
# engine's run 10 times slower under it.
TSAN_UNIT_BIN := $(addprefix $(BUILD)/tests/,test_live test_log test_persist test_backup)

tsan-test:
	@$(MAKE) --no-print-directory SANITIZE=thread tsan-run

tsan-run: $(TSAN_UNIT_BIN) $(BIN) $(DBQUERY) $(NODE_STAMP)
	@./tests/tsan-test.sh $(BUILD) $(TSAN_UNIT_BIN)

# The unit tests under valgrind (memcheck, leaks included; suppressions only
# for libraries' own behaviour in tests/valgrind.supp).
valgrind-unit: $(UNIT_BIN)
	@./tests/valgrind-unit.sh $(UNIT_BIN)

# Builds the fuzz targets with clang (libFuzzer, ASan, UBSan) and runs each
# for FUZZ_TIME seconds from its committed corpus (tests/fuzz/run.sh);
# fails on any crash. FUZZ_TIME=600 for a longer run.
fuzz: fuzz-build
	@./tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TIME)

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang SANITIZE= OPT="$(FUZZ_OPT)" \
	    fuzz-bins

fuzz-bins: $(FUZZ_BIN)

# Serves the demo at http://127.0.0.1:8080 (data in ./data, a private
# redis-server under it); the first run prints a demo admin key. Ctrl-C
# stops both.
run: $(BIN) $(NODE_STAMP)
	@./scripts/run-demo.sh ./$(BIN) data 127.0.0.1:8080

# make bench: every figure of DESIGN section 7 on this machine (about 25
# minutes; not in CI), one part after another: each appends its fixed
# lines to BENCH_RESULTS, then bench/gates.sh prints a `gate:` line for
# every gate (ok, or MISSED with the figure and the floor; it reports,
# never fails). Each part runs alone too; `make bench-gates` judges what
# BENCH_RESULTS holds (the last line of each kind).
BENCH_RESULTS ?= $(BUILD)/bench/results.txt
export BENCH_RESULTS
BENCH_PARTS := bench-spread bench-group bench-engine bench-floor bench-e2e bench-replica \
    bench-redis-wait bench-cluster bench-soak bench-backup

bench: $(BIN) $(BENCH_BIN)
	@rm -f $(BENCH_RESULTS)
	@$(MAKE) --no-print-directory -j1 $(BENCH_PARTS)
	@./bench/gates.sh $(BENCH_RESULTS)

bench-gates:
	@./bench/gates.sh $(BENCH_RESULTS)

# A 1M-leaf spread through the engine and the persister vs a plain UPDATE.
bench-spread: $(BUILD)/bench/bench_spread
	@bash -o pipefail -c './$(BUILD)/bench/bench_spread | tee -a $(BENCH_RESULTS)'

# Groups of leaf writes through the engine and the persister over the
# 1M-fact demo, without HTTP or Redis.
bench-group: $(BUILD)/bench/bench_group
	@bash -o pipefail -c './$(BUILD)/bench/bench_group 1000000 256 41 | tee -a $(BENCH_RESULTS)'

# The engine in memory at 1M and 10M facts (bench/engine.sh; ENGINE_FACTS).
bench-engine: $(BUILD)/bench/bench_engine
	@./bench/engine.sh $(BUILD)

# XADD alone into a redis-server with appendfsync always, GET /health alone,
# fsync: what this machine gives at best (bench/floor.sh).
bench-floor: $(BIN) $(BUILD)/bench/bench_floor $(BUILD)/bench/bench_fsync
	@./bench/floor.sh $(BUILD)

# HTTP -> Redis -> writer -> subscribers over the 1M-fact demo: closed and
# open loop, grid subscribers, the seed-literal baseline (bench/e2e.sh,
# which checks first that it has each of these).
E2E_BIN := $(addprefix $(BUILD)/bench/,bench_load bench_wssub bench_fsync)
bench-e2e: $(BIN) $(E2E_BIN)
	@./bench/e2e.sh $(BUILD)

# A backup of a running writer, a read replica from it: the replica's lag
# at 2,000 writes/s, a backup's effect on the writer's answers
# (bench/replica.sh).
bench-replica: $(BIN) $(addprefix $(BUILD)/bench/,bench_load bench_wssub)
	@./bench/replica.sh $(BUILD)

# An online backup of the 10M-fact demo: checkpoint + copy (what the
# server does) against ATTACH + COPY FROM DATABASE, medians of 3
# (BACKUP_FACTS, BACKUP_RUNS).
bench-backup: $(BUILD)/bench/bench_backup
	@bash -o pipefail -c './$(BUILD)/bench/bench_backup $${BACKUP_FACTS:-10000000} \
	    $${BACKUP_RUNS:-3} | tee -a $(BENCH_RESULTS)'

# What --redis-replicas 1 costs: a primary and a replica, closed loops at
# 64 and 256 clients without and with it (bench/redis-wait.sh).
bench-redis-wait: $(BIN) $(BUILD)/bench/bench_load
	@./bench/redis-wait.sh $(BUILD)

# A Redis Cluster against one Redis at 64 and 256 clients, with and
# without --redis-replicas 1, and what a writer dying with its slot's
# primary loses over 10 runs (bench/cluster.sh; CLUSTER_PARTS).
bench-cluster: $(BIN) $(BUILD)/bench/bench_load
	@./bench/cluster.sh $(BUILD)

# The persister's lag at 5,000 writes/s for 10 minutes (bench/soak.sh;
# SOAK_S shortens it).
bench-soak: $(BIN) $(BUILD)/bench/bench_load
	@./bench/soak.sh $(BUILD)

FORMAT_SRC = src/*.[ch] tests/unit/*.[ch] tests/tools/*.c tests/fuzz/*.c bench/*.[ch]

format:
	clang-format -i $(FORMAT_SRC)

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build build-san build-tsan build-fuzz

-include $(wildcard $(BUILD)/src/*.d $(BUILD)/tests/*.d $(BUILD)/tests/tools/*.d $(BUILD)/bench/*.d \
                   $(BUILD)/fuzz/*.d)
