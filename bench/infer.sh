#!/usr/bin/env bash
# lr-infer throughput on the CPU against transformers on the same weights,
# problems and threads: generate (lr-infer vs model.generate with KV cache)
# and follow (lr-infer teacher forcing vs the reference implementation's
# one-forward-per-step loop). Two models: lr-mkmodel's tiny default, and a
# random model with Qwen2.5-0.5B widths (4 layers, the real Qwen tokenizer).
# Env: THREADS (2), N (8 problems), NEW (32 tokens), BATCH (8).
set -euo pipefail
cd "$(dirname "$0")/.."
TH=${THREADS:-2} N=${N:-8} NEW=${NEW:-32} BATCH=${BATCH:-8}
PY=${PYTHON:-$(tests/ref/venv.sh)}
DATA=data/gsm8k/train.jsonl
make -s build/tokenizers/qwen/tokenizer.json
mkdir -p build/bench
tiny=build/bench/infer-tiny q05=build/bench/qwen05-l4-qtok
[ -f $tiny/model.safetensors ] || bin/lr-mkmodel $tiny --seed 3 > /dev/null
[ -f $q05/model.safetensors ] || bin/lr-mkmodel $q05 --arch qwen2 --layers 4 --hidden 896 --heads 14 --kv-heads 2 \
    --inter 4864 --vocab 151936 --rope-theta 1000000 --tied --dtype bf16 --seed 5 \
    --tokenizer build/tokenizers/qwen/tokenizer.json > /dev/null
echo "system libblas.so.3: $(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed -n 's/^Value: //p'); torch: its own bundled BLAS"
printf '| model | mode | lr-infer tok/s | transformers tok/s | ratio |\n|---|---|---|---|---|\n'
for m in $tiny $q05; do
    rm -f build/bench/e.lrs build/bench/a.lrs
    s1=$(OPENBLAS_NUM_THREADS=$TH bin/lr-infer --model $m --data "$DATA" --limit "$N" --max-new-tokens "$NEW" \
         --batch "$BATCH" --threads "$TH" -o build/bench/e.lrs 2>&1 | sed -n 's/.* (\([0-9.]*\) tok\/s).*/\1/p')
    s2=$(OPENBLAS_NUM_THREADS=$TH bin/lr-infer --model $m --follow build/bench/e.lrs --batch "$BATCH" --threads "$TH" \
         -o build/bench/a.lrs 2>&1 | sed -n 's/.* (\([0-9.]*\) tok\/s).*/\1/p')
    bin/lr-dump build/bench/e.lrs | sed '1d;$d' > build/bench/e.jsonl
    t=$(OMP_NUM_THREADS=$TH "$PY" bench/infer_torch.py $m build/bench/e.jsonl "$N" "$NEW" "$TH" "$BATCH" 2>/dev/null | tail -1)
    tg=$(sed -n 's/.*gen_tok_s=\([^ ]*\).*/\1/p' <<<"$t") tf=$(sed -n 's/.*follow_tok_s=\([^ ]*\).*/\1/p' <<<"$t")
    awk -v m="$(basename $m)" -v a="$s1" -v b="$tg" 'BEGIN { printf "| %s | generate | %.1f | %.1f | %.2fx |\n", m, a, b, a / b }'
    awk -v m="$(basename $m)" -v a="$s2" -v b="$tf" 'BEGIN { printf "| %s | follow | %.1f | %.1f | %.2fx |\n", m, a, b, a / b }'
done
