# Training tokens/s of lr-tune (LoRA q,v r 8, soft-KL, batch 8) on the CPU
# for a tiny model and a 0.5B-width one (Qwen2.5-0.5B's hidden/heads/MLP/
# vocabulary, 2 layers), as a ratio to PEFT + transformers on the same
# machine, threads and examples (bench/tune_peft.py). Unpacked is the
# like-for-like number (the reference runs one forward per example);
# packed shows what sharing the prefixes of one problem's steps saves.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-$(nproc)}
export OPENBLAS_NUM_THREADS=$THREADS
PY=${LR_PYTHON:-$(tests/ref/venv.sh)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# 32 examples: 8 problems x 4 steps, contexts of 80..176 tokens sharing each problem's prefix
awk 'BEGIN {
  print "{\"lrs\":\"lightreasoner-stream\",\"format_version\":1,\"kind\":\"example\",\"kind_version\":1,\"tool\":\"bench\",\"tool_version\":\"0\",\"argv\":[],\"model\":{\"name\":\"\",\"hash\":\"\",\"vocab\":0},\"tokenizer\":{\"name\":\"\",\"hash\":\"\",\"vocab\":0},\"params\":{}}";
  n = 0; srand(1);
  for (p = 0; p < 8; p++) {
    for (i = 0; i < 176; i++) tok[i] = 3 + int(rand() * 250);
    for (s = 0; s < 4; s++) {
      len = 80 + 32 * s; ctx = tok[0];
      for (i = 1; i < len; i++) ctx = ctx "," tok[i];
      printf "{\"id\":\"b:%d\",\"idx\":%d,\"step\":%d,\"prompt_len\":40,\"context\":[%s],\"target_ids\":[%d,%d],\"weights\":[0.7,0.3],\"kl\":1.0}\n", p, p, len, ctx, 5 + p, 9 + s;
      n++
    }
  }
  print "{\"lrs_end\":" n "}" }' > "$tmp/ex.jsonl"
bin/lr-dump --from-json "$tmp/ex.jsonl" > "$tmp/ex.lrs"
bin/lr-mkmodel "$tmp/tiny" --seed 1 > /dev/null
bin/lr-mkmodel "$tmp/w05" --layers 2 --hidden 896 --heads 14 --kv-heads 2 --inter 4864 --vocab 151936 --tied \
    --rope-theta 1000000 --seed 1 > /dev/null
ours() { # model steps pack-flag -> "median-step-seconds tokens-per-step"
    bin/lr-tune --model "$1" --out "$tmp/out" --force --batch 8 --accum 1 --max-steps "$2" $3 --group-by-problem \
        --log "$tmp/log.jsonl" "$tmp/ex.lrs" 2> /dev/null
    jq -rs '[.[1:][].step_s] | sort | "\(.[length/2|floor]) \(1)"' "$tmp/log.jsonl" | cut -d' ' -f1
}
peft() { # model steps mode -> tokens/s
    "$PY" bench/tune_peft.py "$tmp/$1" "$tmp/ex.jsonl" 8 "$2" "$THREADS" "$3" 2> /dev/null | awk '/tokens_per_s/ {print $2}'
}
echo "lr-tune BLAS: $(ldd bin/lr-tune | grep -o 'libopenblas[^ ]*' | head -1) ($(dpkg-query -W -f='${Package} ${Version}' 'libopenblas0-pthread' 2>/dev/null)), OPENBLAS_NUM_THREADS=$THREADS"
"$PY" -c 'import re, torch; print("baseline: torch", torch.__version__, "BLAS", re.search(r"BLAS_INFO=(\w+)", torch.__config__.show()).group(1), "threads", torch.get_num_threads())' 2> /dev/null || true
tok=1024 # example tokens per batch of 8 (2 problems x (80+112+144+176))
for cfg in "tiny 12" "w05 3"; do
    set -- $cfg
    su=$(ours "$tmp/$1" "$2" --no-pack)
    sp=$(ours "$tmp/$1" "$2" --pack)
    u=$(echo "$tok / $su" | bc -l) p=$(echo "$tok / $sp" | bc -l)
    printf '%-5s threads %s: lr-tune unpacked %8.0f tok/s, packed %8.0f example-tok/s (352 of 1024 rows run)\n' "$1" "$THREADS" "$u" "$p"
    if "$PY" -c 'import peft' 2> /dev/null; then
        rf=$(peft "$1" "$2" full) rl=$(peft "$1" "$2" last)
        printf '      PEFT+transformers: %8.0f tok/s (logits everywhere, as the reference), %8.0f tok/s (last-position logits)\n' "$rf" "$rl"
        printf '      ratio lr-tune/PEFT: unpacked %.2fx (%.2fx vs last-position), packed %.2fx\n' \
            "$(echo "$u / $rf" | bc -l)" "$(echo "$u / $rl" | bc -l)" "$(echo "$p / $rf" | bc -l)"
    else
        echo "      (no Python with peft found: no baseline)"
    fi
done
