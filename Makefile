# duckspread build. `make` builds build/duckspread; `make test` runs every
# test; `make run` sets up and serves the demo; `make bench` measures.
# SANITIZE=address,undefined builds into build-san/ with sanitizers.

CC ?= cc
SANITIZE ?=
DUCKDB_DIR ?= $(CURDIR)/.deps/duckdb
ifeq ($(SANITIZE),)
BUILD ?= build
OPT ?= -O2 -g
else
BUILD ?= build-san
OPT ?= -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
endif

PKGS := json-c hiredis libmicrohttpd openssl
WARN := -std=c11 -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wshadow \
        -Wno-missing-field-initializers -Werror
CPPFLAGS += -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Isrc -isystem $(DUCKDB_DIR) \
            $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PKGS) 2>/dev/null))
CFLAGS += $(WARN) $(OPT) -MMD -MP
LDFLAGS += $(OPT) -L$(DUCKDB_DIR) -Wl,-rpath,$(DUCKDB_DIR)
LDLIBS += -lduckdb $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lwslay -lpthread -lm

SRC := $(wildcard src/*.c)
LIB_OBJ := $(patsubst src/%.c,$(BUILD)/src/%.o,$(filter-out src/main.c,$(SRC)))
MAIN_OBJ := $(BUILD)/src/main.o
BIN := $(BUILD)/duckspread

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# Helpers shared by unit tests (reference implementations, fixtures).
UNIT_LIB_SRC := $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c))
UNIT_LIB_OBJ := $(patsubst tests/unit/%.c,$(BUILD)/tests/%.o,$(UNIT_LIB_SRC))
TEST_LIBS := $(shell pkg-config --libs check 2>/dev/null) -lgmp

BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

DEPS_STAMP := .deps/.checked

.SECONDARY:
.PHONY: all deps test unit-test cli-test run bench bench-spread clean format format-check
all: $(BIN)

# Installs Debian packages and fetches DuckDB when missing (scripts/deps.sh).
deps:
	@./scripts/deps.sh
	@mkdir -p .deps && touch $(DEPS_STAMP)

$(DEPS_STAMP): scripts/deps.sh
	@./scripts/deps.sh
	@mkdir -p .deps && touch $@

$(BUILD)/src/%.o: src/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/unit/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/bench/%.o: bench/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BIN): $(MAIN_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(UNIT_LIB_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LIBS) $(LDLIBS)

$(BUILD)/bench/bench_%: $(BUILD)/bench/bench_%.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit-test: $(UNIT_BIN) $(BIN)
	@./tests/run_unit.sh $(BUILD) $(UNIT_BIN)

cli-test: $(BIN)
	@./tests/cli.sh $(BIN)

test: unit-test cli-test

run: $(BIN)
	./$(BIN) demo --data data

bench: bench-spread

bench-spread: $(BUILD)/bench/bench_spread
	./$(BUILD)/bench/bench_spread

format:
	clang-format -i src/*.[ch] tests/unit/*.[ch] bench/*.[ch]

format-check:
	clang-format --dry-run --Werror src/*.[ch] tests/unit/*.[ch] bench/*.[ch]

clean:
	rm -rf build build-san

-include $(wildcard $(BUILD)/src/*.d $(BUILD)/tests/*.d $(BUILD)/bench/*.d)
