#!/usr/bin/env bash
# bench/compare.sh BASE: this tree's C benchmarks against another revision's
# on the same machine in the same run, to show a change made nothing slower.
#   BASE        a git revision (built once into build/bench-base/REV, without
#               CUDA), or BASE_DIR=PATH: an already built checkout
# Each benchmark runs ROUNDS times (default 3) per side, the two sides
# alternating so that a change in the machine's load hits both; the best of
# each side is compared. Prints one table: metric, base, this tree, ratio
# (this / base; higher is faster). A ratio under 1 - TOL (default 0.05) is
# flagged "slower". The machine may be shared: read the ratios, not the
# absolute numbers, and rerun a flagged row before believing it. Exits 1
# when a row is flagged.
# Env: ROUNDS, TOL, THREADS (2), STREAM_MB (256), KL_PROBLEMS (1000),
# BATCHES ("1 4"), LAYERS (4).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
if [ -n "${BASE_DIR:-}" ]; then
    base=$(cd "$BASE_DIR" && pwd)
else
    rev=${1:?usage: bench/compare.sh BASE_REVISION (or BASE_DIR=PATH bench/compare.sh)}
    sha=$(git rev-parse --verify "$rev^{commit}")
    base=$here/build/bench-base/$sha
    if [ ! -x "$base/build/rel/bench/bench_forward" ]; then
        rm -rf "$base.tmp" && mkdir -p "$base.tmp"
        git archive "$sha" | tar -x -C "$base.tmp"
        make -C "$base.tmp" -j"$(nproc)" NVCC= all >"$base.tmp.log" 2>&1 ||
            { echo "compare: building $rev failed (log: $base.tmp.log)" >&2; exit 1; }
        rm -rf "$base" && mv "$base.tmp" "$base"
    fi
fi
[ -x build/rel/bench/bench_forward ] || { echo "compare: build this tree first (make all)" >&2; exit 1; }
R=${ROUNDS:-3} TOL=${TOL:-0.05} TH=${THREADS:-2} LAYERS=${LAYERS:-4}
model=$here/build/bench/qwen05-l$LAYERS
if [ ! -f "$model/model.safetensors" ]; then
    bin/lr-mkmodel "$model" --arch qwen2 --layers "$LAYERS" --hidden 896 --heads 14 --kv-heads 2 --inter 4864 \
        --vocab 151936 --rope-theta 1000000 --tied --dtype bf16 --seed 5 >/dev/null
fi
export BENCH_STREAM_MB=${STREAM_MB:-256} BENCH_KL_PROBLEMS=${KL_PROBLEMS:-1000} OPENBLAS_NUM_THREADS=$TH

best=$(mktemp) && trap 'rm -f "$best"' EXIT
# record SIDE METRIC VALUE: keeps the larger value per (side, metric)
record() { if [ -n "$3" ]; then echo "$1 $2 $3" >>"$best"; fi; }
val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
# one round of every benchmark on one side, from that side's tree
round() {
    local side=$1 dir=$2 out B
    cd "$dir"
    for B in ${BATCHES:-1 4}; do
        out=$(build/rel/bench/bench_forward "$model" "$B" 128 32)
        record "$side" "forward B=$B prefill tok/s" "$(val prefill_tok_s "$out")"
        record "$side" "forward B=$B decode tok/s (f32)" "$(val decode_tok_s "$out")"
        out=$(build/rel/bench/bench_forward "$model" "$B" 128 32 bf16)
        record "$side" "forward B=$B decode tok/s (bf16 copies)" "$(val decode_tok_s "$out")"
    done
    out=$(build/rel/bench/bench_stream)
    record "$side" "stream write MiB/s" "$(sed -n 's/^| write (pack + compress) | \([0-9.]*\) .*/\1/p' <<<"$out")"
    record "$side" "stream read MiB/s" "$(sed -n 's/^| read (decompress + validate + unpack) | \([0-9.]*\) .*/\1/p' <<<"$out")"
    out=$(build/rel/bench/bench_kl)
    record "$side" "lr-kl | lr-contrast problems/s" "$(sed -n 's/^| lr-kl E A \\| lr-contrast | \([0-9.]*\) .*/\1/p' <<<"$out")"
    out=$(build/rel/bench/bench_tokenizer "$here/build/tokenizers/qwen" "$here" 2>/dev/null | tail -1 || true)
    record "$side" "tokenizer MB/s (cache on)" "$(awk '{ print $2 }' <<<"$out")"
    record "$side" "tokenizer MB/s (cache off)" "$(awk '{ print $3 }' <<<"$out")"
    cd "$here"
}
echo "compare: base $base, this tree $here; $R rounds, $TH threads, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for i in $(seq "$R"); do
    echo "compare: round $i of $R" >&2
    round base "$base"
    round this "$here"
done
echo "| metric | base | this tree | this / base |"
echo "|---|---|---|---|"
awk -v tol="$TOL" '
    { v = $NF; side = $1; $1 = ""; $NF = ""; m = substr($0, 2, length($0) - 2)
      if (!(m in seen)) { seen[m] = 1; order[++n] = m }
      if (v + 0 > best[side, m] + 0) best[side, m] = v }
    END { slow = 0
          for (i = 1; i <= n; i++) { m = order[i]; b = best["base", m]; t = best["this", m]
              if (b == "" || t == "") { printf "| %s | %s | %s | n/a (one side did not report) |\n", m, b, t; continue }
              r = b > 0 ? t / b : 0; flag = r < 1 - tol ? " slower" : ""; if (flag != "") slow++
              printf "| %s | %g | %g | %.2f%s |\n", m, b, t, r, flag }
          exit slow > 0 }' "$best"
