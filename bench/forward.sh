#!/usr/bin/env bash
# CPU forward throughput, C engine vs PyTorch (transformers, float32) on the
# same random model with Qwen2.5-0.5B widths (hidden 896, 14/2 heads, MLP
# 4864, vocab 151936, tied, bf16 on disk) but only 4 layers, both on the
# same number of threads (OPENBLAS_NUM_THREADS / torch.set_num_threads).
# Prints each side's BLAS and the ratio C / torch for prefill and decode;
# C decode is timed twice: float32 weights, and bf16 weight copies
# (model_make_bf16, exact for this bf16 checkpoint).
# Env: THREADS (2), LAYERS (4), PROMPT (128), GEN (32), BATCHES ("1 4"),
# REPEAT (2), BENCH (the bench_forward binary to time, default
# build/rel/bench/bench_forward: another build's, to compare two versions
# in one session), TORCH (1; 0 skips the PyTorch side and its ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
TH=${THREADS:-2} LAYERS=${LAYERS:-4} P=${PROMPT:-128} G=${GEN:-32}
BF=${BENCH:-build/rel/bench/bench_forward} TORCH=${TORCH:-1}
if [ "$TORCH" = 1 ]; then PY=${PYTHON:-$(tests/ref/venv.sh)}; fi
dir=build/bench/qwen05-l$LAYERS
if [ ! -f "$dir/model.safetensors" ]; then
    bin/lr-mkmodel "$dir" --arch qwen2 --layers "$LAYERS" --hidden 896 --heads 14 --kv-heads 2 --inter 4864 \
        --vocab 151936 --rope-theta 1000000 --tied --dtype bf16 --seed 5
fi
echo "system libblas.so.3: $(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed -n 's/^Value: //p')"
echo "model: $dir ($(du -sh "$dir" | cut -f1)), threads $TH, prompt $P, generate $G"
# The machine may be shared: each side runs REPEAT times, alternating, and
# the best throughput of each side is compared.
val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
for B in ${BATCHES:-1 4}; do
    cp=0 cd=0 tp=0 td=0 hd=0
    for rep in $(seq "${REPEAT:-2}"); do
        c=$(OPENBLAS_NUM_THREADS=$TH "$BF" "$dir" "$B" "$P" "$G")
        h=$(OPENBLAS_NUM_THREADS=$TH "$BF" "$dir" "$B" "$P" "$G" bf16)
        echo "B=$B run $rep $c"
        echo "B=$B run $rep $h"
        hd=$(max "$hd" "$(val decode_tok_s "$h")")
        [ "$(val tokens "$c")" = "$(val tokens "$h")" ] || echo "B=$B bf16-copy tokens DIFFER"
        cp=$(max "$cp" "$(val prefill_tok_s "$c")") cd=$(max "$cd" "$(val decode_tok_s "$c")")
        [ "$TORCH" = 1 ] || continue
        t=$(OMP_NUM_THREADS=$TH MKL_NUM_THREADS=$TH "$PY" bench/forward_torch.py "$dir" "$B" "$P" "$G" "$TH" 2>/dev/null)
        echo "B=$B run $rep $t"
        tp=$(max "$tp" "$(val prefill_tok_s "$t")") td=$(max "$td" "$(val decode_tok_s "$t")")
        [ "$(val tokens "$c")" = "$(val tokens "$t")" ] && echo "B=$B greedy tokens: identical" || echo "B=$B greedy tokens: DIFFER"
    done
    if [ "$TORCH" != 1 ]; then
        awk -v B="$B" -v cp="$cp" -v cd="$cd" -v hd="$hd" 'BEGIN {
            printf "B=%s best tok/s: C prefill %.1f decode %.2f (bf16 copies: %.2f)\n", B, cp, cd, hd }'
        continue
    fi
    awk -v B="$B" -v cp="$cp" -v tp="$tp" -v cd="$cd" -v td="$td" -v hd="$hd" 'BEGIN {
        printf "B=%s best tok/s: C prefill %.1f decode %.2f (bf16 copies: %.2f) | torch prefill %.1f decode %.2f\n", B, cp, cd, hd, tp, td
        printf "B=%s ratio C/torch: prefill %.2fx, decode %.2fx, decode with bf16 copies %.2fx (goal 1.5x)\n", B, cp / tp, cd / td, hd / td }'
done
