# lr-infer on prompts with a common few-shot header, on each backend,
# generating and then following the generated stream (--follow): the
# header is computed once (one stderr line says so) and the records are
# those of --no-shared-prefix: the same tokens and list lengths, log-probs
# within float rounding (the engines' cases: test_prefix_cpu,
# test_gpu_prefix with preemption on shared pages).
#   cpu: each prompt that starts with the header runs on a copy of its keys
#        and values;
#   cuda (the emulated device): the header's whole KV pages are shared.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
if [ "${LR_SAN:-}" = 1 ]; then E=$LR_ROOT/build/san/emu; else E=$LR_ROOT/build/rel/emu; fi
[ -x "$E/lr-infer" ] || die "no emulated-device lr-infer at $E"
"$B/lr-mkmodel" "$T/exp" --seed 1 --hidden 64 --heads 4 --kv-heads 2 > /dev/null
H="Solve each problem step by step and give the final answer after four hashes. Example: What is 2 plus 3? 2 plus 3 is 5. #### 5. Example: What is 4 times 6? 4 times 6 is 24. #### 24."
# the problem without the header comes first: the rule takes what most prompts share, not the first one's start
echo '{"question": "A problem without the header: 3 times 9?", "answer": "#### 27"}' > "$T/q.jsonl"
for i in 1 2 3 4 5; do echo "{\"question\": \"$H Now: what is $i plus $((i * 7)) times two?\", \"answer\": \"#### $i\"}"; done \
    >> "$T/q.jsonl"
recs() { "$B/lr-dump" "$1" | tail -n +2 | grep -v "\"lrs_end\""; }

# prefix NAME BOUND LINE_RE LR-INFER OPTION...: runs it with and without
# --no-shared-prefix; LINE_RE (sed) must find the kept tokens in the line
GEN=(--data "$T/q.jsonl" --layout gsm8k --preset raw --max-new-tokens 12)
prefix() {
    local name=$1 bound=$2 re=$3 bin=$4
    shift 4
    local run=(--model "$T/exp" --max-context 256 "$@")
    "$bin" "${run[@]}" -o "$T/$name-on.lrs" 2> "$T/$name-on.log"
    "$bin" "${run[@]}" --no-shared-prefix -o "$T/$name-off.lrs" 2> "$T/$name-off.log"
    kept=$(sed -n "s/$re/\1/p" "$T/$name-on.log")
    [ "${kept:-0}" -gt 100 ] || die "$name: no shared prefix line: $(cat "$T/$name-on.log")"
    ! grep -q "shared prefix" "$T/$name-off.log" || die "$name: --no-shared-prefix still shares: $(cat "$T/$name-off.log")"
    [ "$(recs "$T/$name-on.lrs" | wc -l)" = 6 ] || die "$name: record count"
    [ "$(recs "$T/$name-on.lrs" | jq -c '[.idx, .prompt, .tokens, .k, .finish]')" = \
      "$(recs "$T/$name-off.lrs" | jq -c '[.idx, .prompt, .tokens, .k, .finish]')" ] || die "$name: sharing changed the records"
    # compared sorted: this near-flat random model's lists hold near-ties whose order rounding may swap
    # (follow: also the log-probs of the followed stream's ids, in their order)
    lps='(.top_lp | sort) + (.ref_lp // [])'
    worst=$(paste <(recs "$T/$name-on.lrs" | jq -c "$lps") <(recs "$T/$name-off.lrs" | jq -c "$lps") |
        jq -sR '[split("\n")[] | select(length > 0) | split("\t") | map(fromjson) | transpose[] | (.[0] - .[1]) | fabs] | max')
    jq -ne "$worst < $bound" > /dev/null || die "$name: log-probs moved by $worst"
    echo "$name: shared prefix of $kept tokens; the same tokens, log-probs within $worst"
}

# cpu, 4 slots for 6 problems: two of them join on the prefix in a slot freed by another. Log-probs within
# 1e-5 (measured 1.9e-6): BLAS rounds a row's sums by the rows of its call (the prefix alone, then the own
# rows); a wrong context moves them by far more
prefix cpu 1e-5 '.*shared prefix: \([0-9]*\) tokens, copied into each slot that shares it ([0-9]* of the first 4 prompts share \1).*' \
    "$B/lr-infer" "${GEN[@]}" --device cpu --batch 4 --threads 1
# following that stream in one batch of 6: the batch's common start, computed once, spares 4 copies of it
FOLLOW_RE='.*shared prefix: each batch.s common prompt start (at most \([0-9]*\) tokens) computed once, [0-9]* prompt rows spared'
prefix cpu-follow 1e-5 "$FOLLOW_RE" "$B/lr-infer" --follow "$T/cpu-on.lrs" --device cpu --batch 6 --threads 1
# cuda, FMA attention (LR_GPU_TCATT=0: tensor-core prefill is chosen by a call's shape, and the calls differ
# with sharing): 128 tokens, 2 whole pages. Log-probs within 2e-2, measured 4 of the 6 records bit-identical
# and 2 within 1.0e-2 from their first step: the unshared run's first call runs every prompt whole, the shared
# one only the rows after the prefix, and GEMMs of other row counts round otherwise (a wrong page moves
# log-probs by far more)
LR_GPU_TCATT=0 prefix cuda 2e-2 '.*shared prefix: \(128\) tokens, 2 pages .*' "$E/lr-infer" "${GEN[@]}" --device cuda --batch 6
LR_GPU_TCATT=0 prefix cuda-follow 2e-2 "$FOLLOW_RE" "$E/lr-infer" --follow "$T/cpu-on.lrs" --device cuda --batch 6
