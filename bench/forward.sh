#!/usr/bin/env bash
# CPU forward throughput, C engine vs PyTorch (transformers, float32) on the
# same random model with Qwen2.5-0.5B widths (hidden 896, 14/2 heads, MLP
# 4864, vocab 151936, tied, bf16 on disk) but only 4 layers, both on the
# same number of threads (OPENBLAS_NUM_THREADS / torch.set_num_threads).
# Prints each side's BLAS and the ratio C / torch for prefill and decode.
# Env: THREADS (2), LAYERS (4), PROMPT (128), GEN (32), BATCHES ("1 4").
set -euo pipefail
cd "$(dirname "$0")/.."
TH=${THREADS:-2} LAYERS=${LAYERS:-4} P=${PROMPT:-128} G=${GEN:-32}
PY=${PYTHON:-$(tests/ref/venv.sh)}
dir=build/bench/qwen05-l$LAYERS
if [ ! -f "$dir/model.safetensors" ]; then
    bin/lr-mkmodel "$dir" --arch qwen2 --layers "$LAYERS" --hidden 896 --heads 14 --kv-heads 2 --inter 4864 \
        --vocab 151936 --rope-theta 1000000 --tied --dtype bf16 --seed 5
fi
echo "system libblas.so.3: $(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed -n 's/^Value: //p')"
echo "model: $dir ($(du -sh "$dir" | cut -f1)), threads $TH, prompt $P, generate $G"
for B in ${BATCHES:-1 4}; do
    c=$(OPENBLAS_NUM_THREADS=$TH build/rel/bench/bench_forward "$dir" "$B" "$P" "$G")
    t=$(OMP_NUM_THREADS=$TH MKL_NUM_THREADS=$TH "$PY" bench/forward_torch.py "$dir" "$B" "$P" "$G" "$TH" 2>/dev/null)
    echo "B=$B $c"
    echo "B=$B $t"
    val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
    awk -v B="$B" -v cp="$(val prefill_tok_s "$c")" -v tp="$(val prefill_tok_s "$t")" \
        -v cd="$(val decode_tok_s "$c")" -v td="$(val decode_tok_s "$t")" \
        'BEGIN { printf "B=%s ratio C/torch: prefill %.2fx, decode %.2fx (goal 1.5x)\n", B, cp / tp, cd / td }'
    [ "$(val tokens "$c")" = "$(val tokens "$t")" ] && echo "B=$B greedy tokens: identical" || echo "B=$B greedy tokens: DIFFER"
done
