#!/usr/bin/env bash
# Tokenizer speed, one thread: lib/model/tokenizer.c (build/rel/bench/
# bench_tokenizer) against Hugging Face `tokenizers` (RAYON_NUM_THREADS=1)
# on the same texts (gsm8k train+test question/answer, math500 problem/
# solution/answer) in the same run, best of 3 passes each. HF is timed two
# ways: a Python loop of Tokenizer.encode per text, and one encode_batch
# call (one thread); the ratios are lr / HF (> 1: lr faster).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${LR_PYTHON:-}
[ -z "$py" ] && for c in build/venv/bin/python; do [ -x "$c" ] && { py=$c; break; }; done
[ -z "$py" ] && py=$(tests/ref/venv.sh)
make -s build/rel/bench/bench_tokenizer build/tokenizers/qwen/tokenizer.json
out=$(build/rel/bench/bench_tokenizer build/tokenizers/qwen .)
echo "$out" | head -n -1
read -r _ lr_on lr_off lr_cold _ lr_bytes _ _ _ lr_ids <<< "$(echo "$out" | tail -1)"
hf=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$py" - . <<'PY'
import json, os, sys, time
from tokenizers import Tokenizer
root = sys.argv[1]
texts = []
for rel, fields in [("gsm8k/train.jsonl", ["question", "answer"]), ("gsm8k/test.jsonl", ["question", "answer"]),
                    ("math500/test.jsonl", ["problem", "solution", "answer"])]:
    for line in open(os.path.join(root, "data", rel), encoding="utf-8"):
        rec = json.loads(line)
        texts += [str(rec[k]) for k in fields]
nbytes = sum(len(s.encode("utf-8")) for s in texts)
t = Tokenizer.from_file(os.path.join(root, "build", "tokenizers", "qwen", "tokenizer.json"))
best_loop = best_batch = 0.0
for rep in range(3):
    t0 = time.perf_counter(); nids = sum(len(t.encode(s).ids) for s in texts)
    r = nbytes / 1e6 / (time.perf_counter() - t0)
    if rep == 0: cold = r
    best_loop = max(best_loop, r)
    t0 = time.perf_counter(); t.encode_batch(texts)
    best_batch = max(best_batch, nbytes / 1e6 / (time.perf_counter() - t0))
print(best_loop, best_batch, cold, nbytes, nids)
PY
)
read -r hf_loop hf_batch hf_cold hf_bytes hf_ids <<< "$hf"
[ "$hf_bytes" = "$lr_bytes" ] && [ "$hf_ids" = "$lr_ids" ] || { echo "text sets differ: lr $lr_bytes bytes $lr_ids ids, HF $hf_bytes bytes $hf_ids ids" >&2; exit 1; }
awk -v a="$lr_on" -v b="$lr_off" -v l="$hf_loop" -v c="$hf_batch" -v n="$lr_bytes" -v i="$lr_ids" \
    -v lc="$lr_cold" -v hc="$hf_cold" 'BEGIN {
    printf "HF tokenizers, 1 thread: first pass %.2f MB/s (encode() loop); best of 3: %.2f MB/s encode() loop, %.2f MB/s encode_batch\n", hc, l, c
    printf "%d bytes, %d ids; ratio lr/HF, best of 3: %.2fx vs encode() loop, %.2fx vs encode_batch; lr without cache: %.2fx, %.2fx; first passes: %.2fx\n", n, i, a / l, a / c, b / l, b / c, lc / hc }'
