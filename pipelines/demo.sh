#!/usr/bin/env bash
# `make demo`: the whole method end to end on a built-in small default, no
# downloads: two tiny random models (lr-mkmodel; they share its byte-level
# tokenizer), 32 GSM8K training problems, the full pipeline of
# pipelines/lightreasoner.mk, and the before/after table on 16 GSM8K test
# problems. Random models answer nothing correctly: this shows the tools
# working together and the files each stage leaves, not the paper's gains.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/demo}
mkdir -p "$out"
[ -f "$out/expert/config.json" ] || bin/lr-mkmodel "$out/expert" --layers 2 --hidden 64 --seed 21 > /dev/null
[ -f "$out/amateur/config.json" ] || bin/lr-mkmodel "$out/amateur" --arch llama --layers 1 --hidden 32 --heads 2 \
    --kv-heads 1 --inter 64 --seed 22 > /dev/null
make --no-print-directory -f pipelines/lightreasoner.mk OUT="$out/run" EXPERT="$out/expert" AMATEUR="$out/amateur" \
    N=${N:-32} MAX_NEW=${MAX_NEW:-32} EVAL_N=${EVAL_N:-16} EVAL_MAX_NEW=${EVAL_MAX_NEW:-32} \
    TUNE_FLAGS="${TUNE_FLAGS:---targets all --lr 1e-3 --batch 8 --accum 1 --epochs 2}"
echo
echo "stage outputs in $out/run:"
ls -1 "$out/run"
echo "selected steps: $(bin/lr-dump --count "$out/run/examples.lrs"); training log: $out/run/tune-log.jsonl"
