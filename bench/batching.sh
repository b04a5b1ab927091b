#!/usr/bin/env bash
# lr-infer generate throughput, static batches vs continuous batching, on
# the CPU, with answers of very different lengths: a random model sampled
# at temperature 1 with EOS_N single-character EOS tokens stops at each step
# with a probability of about EOS_N / vocabulary, so the lengths are roughly
# geometric (many short, a few running to NEW). Both runs draw the same
# tokens (checked); the table gives tokens per second of wall time and of
# CPU time (the latter is what to compare on a loaded machine).
# Env: THREADS (1), N (64 problems), NEW (256 tokens), BATCH (8), EOS_N (4),
# SHAPE (lr-mkmodel options of the model).
set -euo pipefail
cd "$(dirname "$0")/.."
TH=${THREADS:-1} N=${N:-64} NEW=${NEW:-256} BATCH=${BATCH:-8} EOS_N=${EOS_N:-4}
SHAPE=${SHAPE:---layers 4 --hidden 512 --heads 8 --kv-heads 2 --inter 1408}
d=build/bench/batching
mkdir -p $d
m=$d/model-$(echo "$SHAPE" | tr -dc 'a-z0-9-' | tr -s '-')
[ -f $m/model.safetensors ] || bin/lr-mkmodel $m $SHAPE --seed 11 > /dev/null
for i in $(seq 0 $((N - 1))); do printf '{"q": "Question %d: how many apples are %d and %d?"}\n' $i $i $((i * 7 % 13)); done \
    > $d/q.jsonl
eos=()
for t in A B C D E F G H I J K L M N O P; do [ ${#eos[@]} -lt $((EOS_N * 2)) ] && eos+=(--eos "$t"); done
RUN=(--model $m --data $d/q.jsonl --field q --preset raw --max-new-tokens "$NEW" --batch "$BATCH" --threads "$TH"
     --temperature 1 --seed 5 "${eos[@]}")
printf '| batching | problems | tokens | forward passes | wall s | tok/s (wall) | CPU s | tok/s (CPU) |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for mode in static continuous; do
    rm -f $d/$mode.lrs
    # continuous batching alone: without --no-shared-prefix it would also compute the prompts' common start
    # ("Question ") once, which static batches do not
    share=()
    [ $mode = continuous ] && share=(--no-shared-prefix)
    OPENBLAS_NUM_THREADS=$TH /usr/bin/time -f 'cpu %U %S' bin/lr-infer "${RUN[@]}" --batching $mode "${share[@]}" \
        -o $d/$mode.lrs 2> $d/$mode.err
    tok=$(sed -n 's/.*problems written, \([0-9]*\) tokens in.*/\1/p' $d/$mode.err)
    wall=$(sed -n 's/.*tokens in \([0-9.]*\) s.*/\1/p' $d/$mode.err)
    passes=$(sed -n 's/.* \([0-9]*\) forward passes$/\1/p' $d/$mode.err)
    cpu=$(awk '/^cpu / { print $2 + $3 }' $d/$mode.err)
    awk -v m=$mode -v n="$N" -v t="$tok" -v p="$passes" -v w="$wall" -v c="$cpu" \
        'BEGIN { printf "| %s | %d | %d | %d | %.2f | %.1f | %.2f | %.1f |\n", m, n, t, p, w, t / w, c, t / c }'
done
bin/lr-dump $d/static.lrs | sed '1d;$d' | jq -c .tokens > $d/static.tok
bin/lr-dump $d/continuous.lrs | sed '1d;$d' | jq -c .tokens > $d/continuous.tok
cmp -s $d/static.tok $d/continuous.tok && echo "same tokens for every problem" || echo "TOKENS DIFFER"
jq -s 'map(length) | sort | "answer lengths: min \(.[0]), median \(.[length / 2 | floor]), max \(.[-1])"' -r $d/static.tok
