# lightreasoner-c: `make` builds every tool into bin/ (CPU backend, plus the
# CUDA backend when nvcc is found); `make test` runs the suite twice, plainly
# and under AddressSanitizer + UBSan; `make bench` runs the benchmarks;
# `make deps` installs the Debian packages the project needs; `make fuzz
# FUZZ_SECONDS=N` runs each libFuzzer target N seconds (clang).
#
# New files need no Makefile edit: lib/*/*.c form the library,
# tools/lr-*.c become bin/lr-*, tests/unit/test_*.c become unit tests,
# bench/bench_*.c become benchmarks, cuda/*.cu the CUDA backend.

CC      ?= gcc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
SAN     ?=
OPT     ?= -O2
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
DEPS_PKGS = build-essential pkg-config libmsgpack-dev libzstd-dev zstd libjansson-dev \
            libpcre2-dev libopenblas-dev libutf8proc-dev jq bc python3 python3-venv clang gnuplot-nox

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

CPPFLAGS += -Ilib -I/usr/include/x86_64-linux-gnu/openblas-pthread -D_GNU_SOURCE
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Werror -MMD -MP -pthread $(SANFLAGS)
LDFLAGS += $(SANFLAGS) -pthread
LDLIBS  += -lmsgpackc -lzstd -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm

LIB_SRC   := $(wildcard lib/*/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/liblr.a
TOOL_SRC  := $(wildcard tools/lr-*.c)
TOOLS     := $(TOOL_SRC:tools/%.c=$(BIN)/%)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNITS     := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
CUDA_SRC  := $(wildcard cuda/*.cu)
CXX     ?= g++
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

# The CUDA backend (lib/infer/gpu.h) comes in three builds:
#   real      cuda/*.cu by nvcc, for bin/ when nvcc exists (plain build only);
#   emulated  the same cuda/*.cu by g++ against cuda/emu.h: kernels run as CPU
#             fibers, so tests exercise them here, under ASan too. Linked
#             into tests/unit/test_gpu_*.c and $(BUILD)/emu/lr-infer;
#   none      cuda/none.c, for everything else (and bin/ without nvcc).
EMU_OBJ   := $(CUDA_SRC:%.cu=$(BUILD)/emu/%.o) $(BUILD)/emu/cuda/emu.o
EMU_LIB   := $(BUILD)/libgpu_emu.a
EMU_LIBS  := $(EMU_LIB) -lstdc++
NONE_LIBS := $(BUILD)/cuda/none.o
EMU_TOOLS := $(if $(wildcard cuda/emu.cc),$(BUILD)/emu/lr-infer $(BUILD)/emu/lr-tune)
EMU_BENCH := $(if $(wildcard cuda/emu.cc),$(BUILD)/emu/bench_gpu)
ifneq ($(and $(strip $(NVCC)),$(strip $(CUDA_SRC))),)
ifneq ($(SAN),1)
REAL_LIB  := build/cuda/libgpu_cuda.a
GPU_LIBS  := $(REAL_LIB) -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart_static -ldl -lrt -lstdc++
GPU_DEP   := $(REAL_LIB)
REAL_RES  := $(CUDA_SRC:%.cu=build/cuda/%.ptxas) build/cuda/occupancy build/cuda/launchlog_check
endif
endif
GPU_LIBS  ?= $(NONE_LIBS)
GPU_DEP   ?= $(NONE_LIBS)
GPU_UNITS := $(filter $(BUILD)/tests/test_gpu_%,$(UNITS))

# The Qwen tokenizer the tests and benchmarks read, kept compressed in the
# repository (tests/fixtures/qwen/README.md) and unpacked here.
QWEN_TOK := build/tokenizers/qwen/tokenizer.json build/tokenizers/qwen/tokenizer_config.json
build/tokenizers/qwen/tokenizer.json: tests/fixtures/qwen/tokenizer.json.zst
	@mkdir -p $(dir $@)
	zstd -q -d -f $< -o $@.tmp && mv $@.tmp $@
build/tokenizers/qwen/tokenizer_config.json: tests/fixtures/qwen/tokenizer_config.json
	@mkdir -p $(dir $@)
	cp $< $@

all: $(LIB) $(TOOLS) $(UNITS) $(BENCHES) $(EMU_TOOLS) $(EMU_BENCH) $(QWEN_TOK) $(REAL_RES)


$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN)/%: $(BUILD)/tools/%.o $(LIB) $(GPU_DEP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< -Wl,--start-group $(LIB) $(GPU_LIBS) -Wl,--end-group $(LDLIBS) -o $@

$(EMU_TOOLS): $(BUILD)/emu/%: $(BUILD)/tools/%.o $(LIB) $(EMU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< -Wl,--start-group $(LIB) $(EMU_LIBS) -Wl,--end-group $(LDLIBS) -o $@

$(EMU_BENCH): $(BUILD)/emu/%: $(BUILD)/bench/%.o $(LIB) $(EMU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< -Wl,--start-group $(LIB) $(EMU_LIBS) -Wl,--end-group $(LDLIBS) -o $@

$(GPU_UNITS): $(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB) $(EMU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< -Wl,--start-group $(LIB) $(EMU_LIBS) -Wl,--end-group $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB) $(NONE_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< -Wl,--start-group $(LIB) $(NONE_LIBS) -Wl,--end-group $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB) $(GPU_DEP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< -Wl,--start-group $(LIB) $(GPU_LIBS) -Wl,--end-group $(LDLIBS) -o $@

$(NONE_LIBS): cuda/none.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# Emulated backend: C++17, same warnings, the build's sanitizers.
# (-Wno-unknown-pragmas: g++ does not know nvcc's #pragma unroll)
EMU_CXXFLAGS = -std=c++17 $(OPT) -g -Wall -Wextra -Werror -Wno-unknown-pragmas -MMD -MP -pthread $(SANFLAGS) -DLR_CUDA_EMU
$(BUILD)/emu/%.o: %.cu
	@mkdir -p $(dir $@)
	$(CXX) -x c++ $(CPPFLAGS) -Icuda $(EMU_CXXFLAGS) -c $< -o $@
$(BUILD)/emu/cuda/emu.o: cuda/emu.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) -Icuda $(EMU_CXXFLAGS) -c $< -o $@
$(EMU_LIB): $(EMU_OBJ)
	$(AR) rcs $@ $^

# The real CUDA backend: compiled and linked whenever nvcc exists, so a
# CUDA compile error fails the build even on machines without a GPU.
# ptxas's resource report of each kernel (registers, static shared memory,
# spills: --resource-usage) is kept beside its object as .ptxas, for
# tests/cuda_resources.py; everything else nvcc prints still reaches stderr.
NVCCFLAGS ?= -O3 -std=c++17 -arch=sm_90 -lineinfo
NVCC_CMD = $(NVCC) $(NVCCFLAGS) $(CPPFLAGS) -Icuda -Xcompiler -Wall,-Wextra,-Werror -MMD -MP --resource-usage \
           -c $< -o build/cuda/$*.o
build/cuda/%.o build/cuda/%.ptxas: %.cu
	@mkdir -p $(dir $@)
	@echo "$(NVCC_CMD)"
	@$(NVCC_CMD) 2> build/cuda/$*.ptxas.tmp; rc=$$?; \
	grep -v -e '^ptxas info' -e '^    [0-9]* bytes stack frame' build/cuda/$*.ptxas.tmp >&2; \
	if [ $$rc = 0 ]; then mv build/cuda/$*.ptxas.tmp build/cuda/$*.ptxas; else rm -f build/cuda/$*.ptxas.tmp; fi; exit $$rc
# NVIDIA's occupancy calculator (header-only) on sm_90's limits, for
# tests/cuda_resources.py
build/cuda/occupancy: tests/occupancy.cc
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O1 -Wall -Wextra -Werror -I$(CUDA_HOME)/include $< -o $@
# cuda/launchlog.cu's record written without a card (tests/launchlog_check.cc)
build/cuda/launchlog_check: tests/launchlog_check.cc build/cuda/cuda/launchlog.o
	$(CXX) -std=c++17 -O1 -Wall -Wextra -Werror -I$(CUDA_HOME)/include -Icuda $< build/cuda/cuda/launchlog.o \
	    -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -pthread -o $@
build/cuda/libgpu_cuda.a: $(CUDA_SRC:%.cu=build/cuda/%.o)
	$(AR) rcs $@ $^

# `make test`: the whole suite plainly, then under ASan + UBSan
# (FILTER=x: only the tests whose names contain x).
test:
	tests/ensure-deps.sh
	$(MAKE) -j$(JOBS) all
	$(MAKE) -j$(JOBS) SAN=1 all
	tests/run.sh --all $(FILTER)

# The method end to end on the built-in toy default (no downloads).
demo:
	tests/ensure-deps.sh
	$(MAKE) -j$(JOBS) all
	pipelines/demo.sh

demo-full:
	tests/ensure-deps.sh
	$(MAKE) -j$(JOBS) all
	DEMO_FULL=1 pipelines/demo.sh

bench: all
	bench/run.sh

# libFuzzer targets (tests/fuzz, clang): each runs FUZZ_SECONDS from its
# committed seeds; CI runs tests/fuzz/run.sh 60.
FUZZ_SECONDS ?= 60
fuzz:
	tests/fuzz/run.sh $(FUZZ_SECONDS)

# What tests/gpu/run.sh needs on a GPU machine without our -dev libraries
# (binaries, their shared libraries, the tokenizer) into build/gpu-bundle.
gpu-bundle:
	tests/gpu/bundle.sh

deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEPS_PKGS)

clean:
	rm -rf build/rel build/san build/cuda bin

.PHONY: all test bench deps clean demo demo-full gpu-bundle fuzz
.SECONDARY:

-include $(EMU_OBJ:.o=.d) $(CUDA_SRC:%.cu=build/cuda/%.d)
-include $(LIB_OBJ:.o=.d) $(TOOL_SRC:tools/%.c=$(BUILD)/tools/%.d) $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%.d) $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%.d)
