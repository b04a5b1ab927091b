#!/usr/bin/env bash
# `make demo`: the paper's comparison in miniature on the models shipped in
# examples/arith (trained from scratch; no downloads): the base expert,
# LightReasoner, the SFT baseline and the random-selection control, each
# tuned row under 3 seeds, scored on the world's test split, then the
# table and the report (pipelines/report.mk) with its figures.
# `make demo-full` (DEMO_FULL=1) adds every ablation and the lowest-KL
# control; it reuses what `make demo` already made (same OUT, same settings).
# Interrupted, a rerun continues where it stopped.
#
# Sizes are chosen to fit two CPU cores in minutes: every knob below can be
# overridden from the environment, e.g. `N=400 STEPS=200 make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
WORLD=${WORLD:-examples/arith}
OUT=${OUT:-build/demo}
for f in "$WORLD/expert/config.json" "$WORLD/amateur/config.json" "$WORLD/data/gsm8k/train.jsonl" "$WORLD/data/gsm8k/test.jsonl"; do
    [ -f "$f" ] || { echo "demo: $f is missing (the world's models and data ship in $WORLD)" >&2; exit 2; }
done
if [ -n "${DEMO_FULL:-}" ]; then
    ROWS=${ROWS:-lightreasoner sft no-select no-contrast no-contrast-onehot no-both random lowest}
else
    ROWS=${ROWS:-lightreasoner sft random}
fi
# one thread per process and two processes at once: on two small cores the
# tiny matrices gain nothing from a second thread, two jobs use both cores
export OPENBLAS_NUM_THREADS=1
t0=$SECONDS
make --no-print-directory -j "${JOBS:-2}" -f pipelines/report.mk OUT="$OUT" \
    EXPERT="$WORLD/expert" AMATEUR="$WORLD/amateur" \
    DATA="$WORLD/data/gsm8k/train.jsonl" EVAL_DATA="$WORLD/data/gsm8k/test.jsonl" \
    ROWS="$ROWS" SEEDS="${SEEDS:-1 2 3}" \
    N="${N:-200}" MAX_NEW="${MAX_NEW:-128}" EVAL_N="${EVAL_N:-300}" EVAL_MAX_NEW="${EVAL_MAX_NEW:-256}" \
    SFT_N="${SFT_N:-200}" SFT_SAMPLES="${SFT_SAMPLES:-2}" SFT_MAX_NEW="${SFT_MAX_NEW:-256}" \
    TUNE_FLAGS="${TUNE_FLAGS:---lr ${LR:-1e-3} --batch 8 --accum 1 --max-steps ${STEPS:-60}}" \
    THREADS=1 DEVICE="${DEVICE:-cpu}"
echo "demo: $((SECONDS - t0)) s wall on $(nproc) cores (rows: $ROWS)"
