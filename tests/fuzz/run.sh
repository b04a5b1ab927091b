#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang (ASan + UBSan) and
# runs each for SECONDS (default 60), starting from the eval goldens.
# Usage: tests/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=build/fuzz
mkdir -p "$out/corpus_answer"
src=$(ls lib/*/*.c)
clang -std=c11 -g -O1 -D_GNU_SOURCE -Ilib -I/usr/include/x86_64-linux-gnu/openblas-pthread \
    -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_answer.c $src \
    -lmsgpackc -lzstd -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -lpthread -o "$out/fuzz_answer"
# seeds: the regression corpus' predictions and golds
jq -r '.prediction' tests/golden/eval_corpus.jsonl | split -l 1 - "$out/corpus_answer/seed_"
"$out/fuzz_answer" -max_total_time="$secs" -max_len=4096 "$out/corpus_answer"
