# repliq build: librepliq.a, the repliq CLI, tests and benchmarks.
# make            release build into build/
# make test       build and run the test suite (needs REPLIQ_DATA and the smollm2 model; see README)
# make asan       the same tests built with address+undefined sanitizers into build-asan/
CC ?= gcc
BUILD ?= build
OPT ?= -O2
# -ffp-contract=off: reference kernels must not fuse multiply-adds, so they agree
# bit for bit with ggml's C reference.
CFLAGS_BASE = -std=c11 -g $(OPT) -Wall -Wextra -Werror -D_GNU_SOURCE -ffp-contract=off -pthread \
              -Isrc $(shell pkg-config --cflags libcjson libpcre2-8 2>/dev/null) -I/usr/include/x86_64-linux-gnu/openblas-pthread
CFLAGS += $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS = -lopenblas -llapacke -lpcre2-8 -lcjson -llzma -lcrypto -lm -pthread
SRCDIR = $(abspath .)
CFLAGS += -DRQ_SOURCE_DIR='"$(SRCDIR)"'

LIB_SRC := $(wildcard src/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)
# shell tests (no C code to sanitize: the sanitizer run skips them)
SCRIPT_TESTS ?= tests/test_pull.sh tests/test_cli.sh tests/test_bpw.sh tests/test_scripts.sh

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all lib tests test asan bench clean format lint
all: $(BUILD)/repliq $(TEST_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c $(wildcard src/*.h) $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/librepliq.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/repliq: $(CLI_OBJ) $(BUILD)/librepliq.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/librepliq.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/librepliq.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

tests: $(TEST_BIN) $(BUILD)/repliq

test: tests
	@REPLIQ_BIN=$(BUILD)/repliq tests/run.sh $(TEST_BIN) $(SCRIPT_TESTS)

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SCRIPT_TESTS= EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test

bench: $(BENCH_BIN)

format:
	clang-format -i src/*.c src/*.h src/cli/*.c tests/*.c tests/*.h bench/*.c fuzz/*.c

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr -Isrc src src/cli

clean:
	rm -rf build build-asan
