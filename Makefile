# lightreasoner-c: `make` builds every tool into bin/ (CPU backend, plus the
# CUDA backend when nvcc is found); `make test` runs the suite twice, plainly
# and under AddressSanitizer + UBSan; `make bench` runs the benchmarks;
# `make deps` installs the Debian packages the project needs.
#
# New files need no Makefile edit: libcommon/*.c form the library,
# tools/lr-*.c become bin/lr-*, tests/unit/test_*.c become unit tests,
# bench/bench_*.c become benchmarks, cuda/*.cu the CUDA backend.

CC      ?= gcc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
SAN     ?=
OPT     ?= -O2
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
DEPS_PKGS = build-essential pkg-config libmsgpack-dev libzstd-dev zstd libjansson-dev \
            libpcre2-dev libopenblas-dev libutf8proc-dev jq bc python3 python3-venv

ifeq ($(SAN),1)
BUILD   := build/san
BIN     := build/san/bin
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1
else
BUILD   := build/rel
BIN     := bin
SANFLAGS :=
endif

CPPFLAGS += -Ilibcommon -I/usr/include/x86_64-linux-gnu/openblas-pthread -D_GNU_SOURCE
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Werror -MMD -MP -pthread $(SANFLAGS)
LDFLAGS += $(SANFLAGS) -pthread
LDLIBS  += -lmsgpackc -lzstd -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm

LIB_SRC   := $(wildcard libcommon/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libcommon.a
TOOL_SRC  := $(wildcard tools/lr-*.c)
TOOLS     := $(TOOL_SRC:tools/%.c=$(BIN)/%)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNITS     := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
CUDA_SRC  := $(wildcard cuda/*.cu)

all: $(LIB) $(TOOLS) $(UNITS) $(BENCHES) cuda

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN)/%: $(BUILD)/tools/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The CUDA backend: compiled and linked whenever nvcc exists, so a CUDA
# compile error fails the build even on machines without a GPU.
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CUDA_SRC)),)
CUDA_OBJ := $(CUDA_SRC:%.cu=build/cuda/%.o)
CUDA_LIB := build/cuda/libcuda_ops.a
cuda: $(CUDA_LIB)
build/cuda/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -arch=sm_90 -Ilibcommon -Xcompiler -Wall,-Wextra,-Werror -c $< -o $@
$(CUDA_LIB): $(CUDA_OBJ)
	$(AR) rcs $@ $^
else
cuda:
endif
else
cuda:
	@echo "nvcc not found: CUDA backend not built"
endif

# `make test`: the whole suite plainly, then under ASan + UBSan.
test:
	tests/ensure-deps.sh
	$(MAKE) -j$(JOBS) all
	$(MAKE) -j$(JOBS) SAN=1 all
	tests/run-all.sh

# The method end to end on the built-in toy default (no downloads).
demo:
	tests/ensure-deps.sh
	$(MAKE) -j$(JOBS) all
	pipelines/demo.sh

bench: all
	bench/run.sh

deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEPS_PKGS)

clean:
	rm -rf build/rel build/san build/cuda bin

.PHONY: all test bench deps clean cuda demo
.SECONDARY:

-include $(LIB_OBJ:.o=.d) $(TOOL_SRC:tools/%.c=$(BUILD)/tools/%.d) $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%.d) $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%.d)
